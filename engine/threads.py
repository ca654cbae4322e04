"""Keep one busy OpenMP worker pool per process.

libgomp (the OpenMP runtime of torch's CPU build) gives every thread that starts a parallel
region its own pool of worker threads. Once a process holds more OpenMP threads than there are
cores, it stops spinning between parallel regions and puts its workers to sleep instead, so
each of the hundreds of small kernels in a decode step pays a futex wake-up. Measured on the
2-core CI machine: one SmolLM2 decode step took 44 ms on the engine's model thread against
28.5 ms on the main thread, and an elementwise multiply 70 us against 8 us, only because the
main thread had used torch first (loading the model) and so kept a second, idle pool.

The rule that avoids it: a thread that is done with model compute for a while hands its pool
back (``omp_pause_resource_all``, OpenMP 5.0). The loaders do it after loading, the embedder and
the generator after each call, the engine's model thread when it goes idle, and the event-loop
thread before it hands work to the model thread. Handing back an absent pool costs under a
microsecond; recreating one costs about a hundred, far below any model call.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import os
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import torch

_OMP_PAUSE_SOFT = 1  # omp_pause_soft: free the threads, keep the runtime's settings

P = ParamSpec("P")
R = TypeVar("R")


@functools.cache
def _pause_function() -> Callable[[int], int] | None:
    """``omp_pause_resource_all`` of the OpenMP runtime torch uses, or None when there is none
    (a build without OpenMP, or a runtime older than OpenMP 5.0)."""
    torch_lib = os.path.join(os.path.dirname(torch.__file__), "lib")
    candidates = sorted(glob.glob(os.path.join(torch_lib, "libgomp*.so*")))
    candidates += sorted(glob.glob(os.path.join(torch_lib, "libiomp*.so*")))
    system = ctypes.util.find_library("gomp")
    if system:
        candidates.append(system)
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)  # already loaded by torch: this returns the same handle
            pause = lib.omp_pause_resource_all
        except (OSError, AttributeError):
            continue
        pause.argtypes = [ctypes.c_int]
        pause.restype = ctypes.c_int
        return pause  # type: ignore[no-any-return]
    return None


def release_openmp_threads() -> bool:
    """Free the calling thread's OpenMP worker pool; its next parallel kernel builds a new one.

    Returns whether the runtime did it. Must not be called from inside a parallel region (no
    Python code runs there)."""
    pause = _pause_function()
    return pause is not None and pause(_OMP_PAUSE_SOFT) == 0


def releases_openmp_threads(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorate a model call made from any thread: its pool is handed back when it returns."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        finally:
            release_openmp_threads()

    return wrapper
