"""Read a GGUF file's metadata and tensor table, checking every offset against the file size.

Why not ``gguf.GGUFReader``: it builds a numpy view per array element, which for a 49k-token
vocabulary plus 49k merges costs ~5 s — more than our whole load budget. GGUF's layout is small
and stable (v2/v3), so we walk it with ``struct`` on an mmap and keep the ``gguf`` package for
what it is good at: the type constants and ``gguf.quants.dequantize``. A truncated or garbled
file fails here with :class:`CorruptModelFile` naming the file, rather than with an IndexError
deep inside numpy.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
from gguf.constants import GGML_QUANT_SIZES, GGUF_MAGIC, GGMLQuantizationType, GGUFValueType

from engine.errors import CorruptModelFile, ModelNotFound

_SCALARS: dict[int, str] = {
    GGUFValueType.UINT8: "<B", GGUFValueType.INT8: "<b", GGUFValueType.UINT16: "<H",
    GGUFValueType.INT16: "<h", GGUFValueType.UINT32: "<I", GGUFValueType.INT32: "<i",
    GGUFValueType.FLOAT32: "<f", GGUFValueType.BOOL: "<?", GGUFValueType.UINT64: "<Q",
    GGUFValueType.INT64: "<q", GGUFValueType.FLOAT64: "<d",
}
_NUMPY: dict[int, np.dtype[Any]] = {
    k: np.dtype(np.bool_ if v == "<?" else v) for k, v in _SCALARS.items()}


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # torch order (rows first); GGUF stores dims fastest-first
    ggml_type: int  # a GGMLQuantizationType value; may be one this gguf version doesn't know
    offset: int  # absolute byte offset in the file
    nbytes: int


@dataclass
class GGUFFile:
    path: str
    metadata: dict[str, Any]
    tensors: dict[str, TensorInfo]
    buffer: mmap.mmap | bytes  # whole file, memory-mapped

    def raw(self, info: TensorInfo) -> np.ndarray:
        """The tensor's stored bytes as a zero-copy uint8 view of the mapping."""
        return np.frombuffer(self.buffer, dtype=np.uint8, count=info.nbytes, offset=info.offset)


class _Cursor:
    """Sequential little-endian reads over the mapping; running off the end means truncation."""

    def __init__(self, buf: mmap.mmap | bytes, path: str) -> None:
        self.buf, self.path, self.pos, self.size = buf, path, 0, len(buf)

    def fail(self, what: str) -> CorruptModelFile:
        return CorruptModelFile(
            self.path, f"file is truncated or corrupt: cannot read {what} at byte {self.pos} "
            f"(file has {self.size} bytes)")

    def unpack(self, fmt: str, what: str) -> Any:
        n = struct.calcsize(fmt)
        if self.pos + n > self.size:
            raise self.fail(what)
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return value

    def string(self, what: str) -> str:
        n = self.unpack("<Q", what)
        if self.pos + n > self.size:
            raise self.fail(what)
        raw = self.buf[self.pos:self.pos + n]
        self.pos += n
        try:
            return bytes(raw).decode("utf-8")
        except UnicodeDecodeError as e:
            raise CorruptModelFile(self.path, f"{what} is not valid UTF-8") from e

    def value(self, vtype: int, key: str) -> Any:
        if vtype in _SCALARS:
            return self.unpack(_SCALARS[vtype], key)
        if vtype == GGUFValueType.STRING:
            return self.string(key)
        if vtype == GGUFValueType.ARRAY:
            etype = self.unpack("<I", key)
            count = self.unpack("<Q", key)
            if etype in _NUMPY:  # numeric arrays (token types, scores) in one numpy call
                dtype = _NUMPY[etype]
                if self.pos + count * dtype.itemsize > self.size:
                    raise self.fail(key)
                arr = np.frombuffer(self.buf, dtype=dtype, count=count, offset=self.pos)
                self.pos += count * dtype.itemsize
                return arr
            if etype == GGUFValueType.STRING:
                return self._strings(count, key)
            return [self.value(etype, key) for _ in range(count)]
        raise CorruptModelFile(self.path, f"metadata {key!r} has unknown value type {vtype}")

    def _strings(self, count: int, key: str) -> list[str]:
        # Hot loop for vocabularies: local names, no per-item method calls.
        buf, pos, size = self.buf, self.pos, self.size
        unpack = struct.Struct("<Q").unpack_from
        out: list[str] = []
        append = out.append
        try:
            for _ in range(count):
                (n,) = unpack(buf, pos)
                pos += 8
                if pos + n > size:
                    raise struct.error
                append(str(buf[pos:pos + n], "utf-8"))
                pos += n
        except (struct.error, UnicodeDecodeError):
            self.pos = pos
            raise self.fail(f"string {len(out)} of {key!r}") from None
        self.pos = pos
        return out


def read_gguf(path: str | os.PathLike[str]) -> GGUFFile:
    """Parse ``path``'s header; tensor data stays in the mmap until dequantised."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelNotFound(path, "no such model file")
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise CorruptModelFile(path, "file is empty")
        buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    cur = _Cursor(buf, path)
    magic = cur.unpack("<I", "magic")
    if magic != GGUF_MAGIC:
        raise CorruptModelFile(path, "not a GGUF file (bad magic bytes)")
    version = cur.unpack("<I", "version")
    if version not in (2, 3):
        raise CorruptModelFile(path, f"unsupported GGUF version {version} (need 2 or 3)")
    n_tensors = cur.unpack("<Q", "tensor count")
    n_kv = cur.unpack("<Q", "metadata count")
    if n_tensors > size or n_kv > size:  # each entry takes at least a byte: garbage counts
        raise cur.fail("header counts")

    metadata: dict[str, Any] = {}
    for i in range(n_kv):
        key = cur.string(f"metadata key #{i}")
        metadata[key] = cur.value(cur.unpack("<I", f"type of {key!r}"), key)

    entries: list[tuple[str, tuple[int, ...], int, int]] = []
    for i in range(n_tensors):
        name = cur.string(f"tensor name #{i}")
        n_dims = cur.unpack("<I", f"dims of {name!r}")
        if n_dims > 8:
            raise CorruptModelFile(path, f"tensor {name!r} claims {n_dims} dimensions")
        dims = [cur.unpack("<Q", f"shape of {name!r}") for _ in range(n_dims)]
        ggml_type = cur.unpack("<I", f"type of {name!r}")
        offset = cur.unpack("<Q", f"offset of {name!r}")
        entries.append((name, tuple(reversed(dims)), ggml_type, offset))

    alignment = int(metadata.get("general.alignment", 32))
    data_start = -(-cur.pos // alignment) * alignment
    tensors: dict[str, TensorInfo] = {}
    for name, shape, ggml_type, offset in entries:
        nbytes = _nbytes(shape, ggml_type)
        start = data_start + offset
        if start + nbytes > size:
            raise CorruptModelFile(
                path, f"file is truncated: tensor {name!r} needs bytes {start}..{start + nbytes} "
                f"but the file has {size} bytes")
        tensors[name] = TensorInfo(name, shape, ggml_type, start, nbytes)
    return GGUFFile(path, metadata, tensors, buf)


def _nbytes(shape: tuple[int, ...], ggml_type: int) -> int:
    n = int(np.prod(shape)) if shape else 1
    try:
        block, block_bytes = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
    except (ValueError, KeyError):
        return 0  # unknown type: size unknown; the loader rejects it with UnsupportedQuantType
    return n // block * block_bytes


def type_name(ggml_type: int) -> str:
    try:
        return GGMLQuantizationType(ggml_type).name
    except ValueError:
        return f"unknown type {ggml_type}"

