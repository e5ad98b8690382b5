"""The trainer's intra-op thread policy on a CPU: a fixed count, set for the run and restored after.

Why a fixed count, 1 by default: PyTorch's default is one OpenMP thread per core, and its threads
wait for each other at every kernel. With one other busy process on a 2-core machine a training step
then waits for a thread the operating system has descheduled: a quick `nasdun train` went from 5.3 s
to 24.5 s (4.6x, 2026-12-06, docs/results/throughput.md), while one thread went from 6.1 s to 6.3 s.
The parallelism of nasdun is elsewhere: P candidates in one batched step, and Ray's processes (a search
worker passes its trial's CPUs here). A fixed count also makes the bits a function of the run's
configuration alone, not of the machine's ``OMP_NUM_THREADS`` or what else runs (docs/design.md §6).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from nasdun.core.errors import NasdunError

if TYPE_CHECKING:
    import torch

CPU_THREADS = 1  # the default intra-op threads of a CPU training (see the module docstring)


def check_threads(threads: int | None) -> int:
    """``threads`` as the count a CPU training uses: None -> :data:`CPU_THREADS`; else an integer >= 1."""
    if threads is None:
        return CPU_THREADS
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise NasdunError(f"threads={threads!r}; expected an integer >= 1 (intra-op threads of a CPU training)")
    return threads


@contextlib.contextmanager
def thread_scope(threads: int, device: str | torch.device) -> Iterator[None]:
    """``torch.set_num_threads(threads)`` inside, the caller's count restored after; nothing on a GPU."""
    import torch

    if torch.device(device).type != "cpu":
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)
