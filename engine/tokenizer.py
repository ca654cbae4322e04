"""Tokenizers built with the `tokenizers` library from GGUF metadata or a tokenizer.json, and chat
prompts rendered with the model's own Jinja template.

A GGUF carries its byte-level BPE as metadata: the vocabulary, the merges, which tokens are
control tokens, and the *name* of llama.cpp's pre-tokenizer (``tokenizer.ggml.pre``), i.e. how text
is split before BPE. We map that name to the split regex the model was trained with.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

import jinja2
import tokenizers
from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import AddedToken, Regex, decoders, pre_tokenizers

from engine.errors import MissingTokenizer

log = logging.getLogger(__name__)

# Split regexes of the pre-tokenizers llama.cpp names in `tokenizer.ggml.pre`.
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_REGEX_PRE = {name: _LLAMA3_SPLIT for name in (
    "llama-bpe", "llama3", "llama-v3", "falcon3", "pixtral", "dbrx", "smaug-bpe")}
_REGEX_PRE.update({name: _QWEN2_SPLIT for name in ("qwen2", "deepseek-r1-qwen", "megrez")})
# GPT-2's regex, but every digit is its own piece (llama.cpp: "\p{N}" split first).
_DIGIT_SPLIT_PRE = ("smollm", "starcoder", "refact", "codeshell", "exaone", "minerva")
_GPT2_PRE = ("default", "gpt2", "gpt-2", "")

_CONTROL, _USER_DEFINED = 3, 4  # llama.cpp token types


@lru_cache(maxsize=1)
def _outside_alphabet() -> re.Pattern[str]:
    """Matches any character that is not in the byte-level alphabet."""
    return re.compile("[^" + re.escape("".join(_byte_alphabet().values())) + "]")


@lru_cache(maxsize=1)
def _byte_alphabet() -> dict[int, str]:
    """GPT-2's byte -> printable character table (bytes_to_unicode)."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    table = {b: chr(b) for b in printable}
    n = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + n)
            n += 1
    return table


def _pre_tokenizer(name: str) -> pre_tokenizers.PreTokenizer:
    if name in _REGEX_PRE:
        return pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(_REGEX_PRE[name]), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    if name in _DIGIT_SPLIT_PRE:
        return pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ])
    if name not in _GPT2_PRE:
        log.warning("unknown tokenizer.ggml.pre %r: using GPT-2 pre-tokenization", name)
    return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)


class Tokenizer:
    """Text <-> token ids, special-token ids, and chat prompt rendering for one model."""

    def __init__(
        self,
        backend: tokenizers.Tokenizer,
        *,
        bos_token_id: int | None,
        eos_token_ids: Sequence[int],
        chat_template: str | None,
        add_bos: bool = False,
        source: str = "",
    ) -> None:
        self.backend = backend
        self.bos_token_id = bos_token_id
        self.eos_token_ids = tuple(dict.fromkeys(eos_token_ids))  # ordered, unique
        self.chat_template = chat_template
        self.add_bos = add_bos
        self.source = source

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def from_gguf_metadata(cls, meta: Mapping[str, Any], path: str) -> Tokenizer:
        tokens = meta.get("tokenizer.ggml.tokens")
        if not tokens:
            raise MissingTokenizer(path, "GGUF has no tokenizer.ggml.tokens vocabulary")
        model = meta.get("tokenizer.ggml.model", "")
        if model != "gpt2":
            raise MissingTokenizer(
                path, f"tokenizer.ggml.model {model!r} is not supported (only byte-level BPE "
                "'gpt2'); use the model's Hugging Face directory with tokenizer.json instead")
        merges = meta.get("tokenizer.ggml.merges")
        if merges is None:
            raise MissingTokenizer(path, "GGUF BPE tokenizer has no tokenizer.ggml.merges")
        alphabet = _byte_alphabet()
        outside = _outside_alphabet().search
        # Tokens outside the byte alphabet are stored as raw text; respell them as BPE sees them.
        vocab = {
            (tok if outside(tok) is None else "".join(alphabet[b] for b in tok.encode())): i
            for i, tok in enumerate(tokens)
        }
        model_json = {
            "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
            "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False,
            "ignore_merges": False, "vocab": vocab, "merges": list(merges),
        }
        # One JSON round trip is several times faster than building BPE from Python objects.
        backend = tokenizers.Tokenizer.from_str(json.dumps({
            "version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
            "normalizer": None, "pre_tokenizer": None, "post_processor": None,
            "decoder": None, "model": model_json,
        }))
        backend.pre_tokenizer = _pre_tokenizer(str(meta.get("tokenizer.ggml.pre", "default")))
        backend.decoder = decoders.ByteLevel()
        types = meta.get("tokenizer.ggml.token_type")
        if types is not None:
            specials = [AddedToken(tokens[i], special=True, normalized=False)
                        for i, t in enumerate(types)
                        if t == _CONTROL and outside(tokens[i]) is None]
            backend.add_special_tokens(specials)
            users = [AddedToken(tokens[i], special=False, normalized=False)
                     for i, t in enumerate(types) if t == _USER_DEFINED and tokens[i] in vocab]
            if users:
                backend.add_tokens(users)
        eos = [meta[k] for k in ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
                                 "tokenizer.ggml.eom_token_id") if k in meta]
        return cls(
            backend,
            bos_token_id=_opt_int(meta.get("tokenizer.ggml.bos_token_id")),
            eos_token_ids=[int(e) for e in eos],
            chat_template=meta.get("tokenizer.chat_template"),
            add_bos=bool(meta.get("tokenizer.ggml.add_bos_token", False)),
            source=path,
        )

    @classmethod
    def from_hf_dir(cls, directory: str) -> Tokenizer:
        """From ``tokenizer.json`` (+ ``tokenizer_config.json``, ``generation_config.json``)."""
        tok_path = os.path.join(directory, "tokenizer.json")
        if not os.path.isfile(tok_path):
            raise MissingTokenizer(directory, "no tokenizer.json in the model directory")
        backend = tokenizers.Tokenizer.from_file(tok_path)
        tcfg = _read_json(os.path.join(directory, "tokenizer_config.json"))
        gcfg = _read_json(os.path.join(directory, "generation_config.json"))
        mcfg = _read_json(os.path.join(directory, "config.json"))

        def token_id(value: Any) -> int | None:
            if isinstance(value, dict):
                value = value.get("content")
            return backend.token_to_id(value) if isinstance(value, str) else None

        eos: list[int] = []
        for source in (gcfg.get("eos_token_id"), mcfg.get("eos_token_id")):
            eos.extend([source] if isinstance(source, int) else list(source or []))
        if (tid := token_id(tcfg.get("eos_token"))) is not None:
            eos.insert(0, tid)
        bos = _opt_int(gcfg.get("bos_token_id", mcfg.get("bos_token_id")))
        if (tid := token_id(tcfg.get("bos_token"))) is not None:
            bos = tid
        template = tcfg.get("chat_template")
        jinja_path = os.path.join(directory, "chat_template.jinja")
        if os.path.isfile(jinja_path):
            with open(jinja_path, encoding="utf-8") as f:
                template = f.read()
        if isinstance(template, list):  # [{"name": "default", "template": ...}, ...]
            named = {t["name"]: t["template"] for t in template}
            template = named.get("default", next(iter(named.values()), None))
        # Whether plain encoding adds BOS lives in the post-processor of tokenizer.json.
        return cls(backend, bos_token_id=bos, eos_token_ids=eos, chat_template=template,
                   add_bos=False, source=directory)

    # -- text <-> ids --------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return int(self.backend.get_vocab_size(with_added_tokens=True))

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Token ids of ``text``. Special-token text like ``<|im_start|>`` maps to its id.
        ``add_special_tokens`` adds BOS (GGUF flag) / the tokenizer.json post-processor's tokens."""
        ids: list[int] = self.backend.encode(text, add_special_tokens=add_special_tokens).ids
        bos = self.bos_token_id
        if add_special_tokens and self.add_bos and bos is not None and (not ids or ids[0] != bos):
            ids.insert(0, bos)
        return ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.backend.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        return str(self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens))

    def token_to_id(self, token: str) -> int | None:
        tid = self.backend.token_to_id(token)
        return None if tid is None else int(tid)

    def id_to_token(self, token_id: int) -> str | None:
        tok = self.backend.id_to_token(token_id)
        return None if tok is None else str(tok)

    # -- chat ----------------------------------------------------------------------------------
    def render_chat(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True,
                    **extra: Any) -> str:
        """The prompt text the model's own chat template makes of ``messages``."""
        if not self.chat_template:
            raise MissingTokenizer(self.source, "the model has no chat template")
        variables: dict[str, Any] = {
            "bos_token": self._token_text(self.bos_token_id),
            "eos_token": self._token_text(self.eos_token_ids[0] if self.eos_token_ids else None),
        }
        variables.update(extra)
        return _compile(self.chat_template).render(
            messages=list(messages), add_generation_prompt=add_generation_prompt, **variables)

    def chat_prompt(self, messages: Sequence[Mapping[str, Any]], **extra: Any) -> list[int]:
        """Token ids of the rendered chat prompt, ending with the assistant turn's header."""
        return self.encode(self.render_chat(messages, add_generation_prompt=True, **extra))

    def _token_text(self, token_id: int | None) -> str:
        return "" if token_id is None else (self.id_to_token(token_id) or "")


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _read_json(path: str) -> dict[str, Any]:
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    return data if isinstance(data, dict) else {}


# -- Jinja, as transformers renders chat templates ----------------------------------------------
class _GenerationTag(Extension):
    """``{% generation %}...{% endgeneration %}`` marks assistant text for training masks in HF;
    for rendering it is transparent."""

    tags = {"generation"}  # noqa: RUF012 - jinja2 declares it as a plain attribute

    def parse(self, parser: Parser) -> nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.Scope(body, lineno=lineno)


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


@lru_cache(maxsize=8)
def _compile(template: str) -> jinja2.Template:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[_GenerationTag, "jinja2.ext.loopcontrols"])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env.from_string(template)
