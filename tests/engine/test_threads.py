"""engine.threads: handing a thread's OpenMP pool back leaves torch working in every thread."""

from __future__ import annotations

import threading

import torch

from engine.threads import release_openmp_threads, releases_openmp_threads


def _uses_openmp() -> bool:
    return "OpenMP" in torch.__config__.parallel_info()


def test_release_works_on_torchs_own_runtime_and_torch_keeps_computing() -> None:
    a = torch.randn(256, 576)
    expected = a @ a.T  # builds this thread's pool
    # torch's CPU wheels bundle libgomp (OpenMP 5.0+): the pause must be found and succeed.
    assert release_openmp_threads() is _uses_openmp()
    torch.testing.assert_close(a @ a.T, expected)  # a fresh pool computes the same
    assert release_openmp_threads() is _uses_openmp()  # no pool at all: still fine


def test_pool_released_in_one_thread_does_not_disturb_another() -> None:
    a = torch.randn(128, 384)
    results: list[torch.Tensor] = []

    @releases_openmp_threads
    def work() -> torch.Tensor:
        return torch.softmax(a @ a.T, dim=-1)

    expected = work()
    threads = [threading.Thread(target=lambda: results.append(work())) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3
    for r in results:
        torch.testing.assert_close(r, expected)
