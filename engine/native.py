"""Build and load the engine's C kernels (``engine/kernels/*.c``, one library) on first use.

``qmatmul.c``: decode matmuls on GGUF quantised blocks (engine/quant.py). ``attention.c`` and
``layernorm.c``: the BERT encoder's attention over packed variable-length sequences and its
fused residual + LayerNorm step (engine/bert_packed.py).

Nothing is downloaded and nothing is prebuilt: the source ships with the package and is
compiled once per machine with the system C compiler (``$CC``, else ``cc``/``gcc``) for the CPU
it runs on, then cached under ``$SUPPORTBOT_CACHE_DIR`` (default ``~/.cache/supportbot``) by a
hash of the source, the flags and the CPU's feature flags, so a shared home directory never
hands one CPU another's binary. It links to the OpenMP runtime torch already loaded, so its
threads are torch's threads.

No compiler, a failed build, or ``SUPPORTBOT_NATIVE_KERNELS=0``: :func:`kernel_library`
returns None and the engine computes with torch ops and its fp32 weights, just slower.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch  # noqa: F401  # loads torch's OpenMP runtime first, so the kernel links to it

log = logging.getLogger(__name__)

_KERNELS = Path(__file__).parent / "kernels"
SOURCES = (_KERNELS / "qmatmul.c", _KERNELS / "attention.c", _KERNELS / "layernorm.c")
HEADERS = (_KERNELS / "vec.h",)  # part of the cache key, not of the command line
DISABLE_ENV = "SUPPORTBOT_NATIVE_KERNELS"  # read below by name (tests/test_deploy.py greps it)
CACHE_ENV = "SUPPORTBOT_CACHE_DIR"
# -ffp-contract=off: the kernel's dequantisation must round like numpy's (no fused q*d+m).
FLAGS = ("-O3", "-march=native", "-ffp-contract=off", "-fopenmp", "-shared", "-fPIC")


def native_kernels_enabled() -> bool:
    value = os.environ.get("SUPPORTBOT_NATIVE_KERNELS", "1")
    return value.strip().lower() not in ("0", "false", "no", "off")


def cpu_flags() -> str:
    """The CPU's feature flags as /proc/cpuinfo lists them (part of the build's cache key)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _cache_dir() -> Path:
    base = os.environ.get("SUPPORTBOT_CACHE_DIR") or os.path.join(Path.home(), ".cache",
                                                                  "supportbot")
    return Path(base) / "kernels"


def build_library(compiler: str, extra_flags: Sequence[str] = ()) -> Path:
    """Compile the kernels (once per source, flags, compiler and CPU) and return the file.
    ``extra_flags`` go after the defaults, e.g. ``-mno-avx512f`` to build the AVX2 variant."""
    flags = [*FLAGS, *extra_flags]
    parts = [*(path.read_bytes() for path in (*SOURCES, *HEADERS)), " ".join(flags).encode(),
             compiler.encode(), platform.machine().encode(), cpu_flags().encode()]
    key = hashlib.sha256(b"\0".join(parts))
    target = _cache_dir() / f"supportbot-kernels-{key.hexdigest()[:16]}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename: processes racing to build never load half a file.
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        subprocess.run([compiler, *flags, "-o", tmp, *map(str, SOURCES), "-lm"], check=True,
                       capture_output=True, text=True, timeout=120)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def load_library(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    lib.sb_qmatmul.restype = ctypes.c_int
    lib.sb_qmatmul.argtypes = [ctypes.c_int, *[ctypes.c_void_p] * 5, *[ctypes.c_int64] * 3]
    lib.sb_qmatmul_fast.restype = ctypes.c_int
    lib.sb_qmatmul_fast.argtypes = []
    lib.sb_rmsnorm.restype = None
    lib.sb_rmsnorm.argtypes = [*[ctypes.c_void_p] * 3, ctypes.c_int64, ctypes.c_int64,
                               ctypes.c_float]
    lib.sb_attention_packed.restype = ctypes.c_int
    lib.sb_attention_packed.argtypes = [*[ctypes.c_void_p] * 4, *[ctypes.c_int64] * 4,
                                        ctypes.c_float, ctypes.c_int]
    lib.sb_add_layernorm.restype = None
    lib.sb_add_layernorm.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int,
                                     *[ctypes.c_void_p] * 3, ctypes.c_int64, ctypes.c_int64,
                                     ctypes.c_float]
    return lib


def find_compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    return None


@functools.cache
def kernel_library() -> ctypes.CDLL | None:
    """The compiled kernels, or None (disabled, no compiler, or the build failed)."""
    if not native_kernels_enabled():
        return None
    compiler = find_compiler()
    if compiler is None:
        log.info("no C compiler found: the engine runs without its C kernels")
        return None
    try:
        return load_library(build_library(compiler))
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", "") or exc
        log.warning("building the C kernels failed, running without them: %s", detail)
        return None
