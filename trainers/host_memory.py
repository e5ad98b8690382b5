"""Keep freed activation buffers in the process heap on CPU (glibc), instead of handing them back.

A batched step allocates and frees the same few hundred tensors every iteration. At P = 16
of the `small` setting each activation is 0.8 MB, above glibc's dynamic mmap threshold
(128 KiB, raised only as large blocks are freed) and its 128 KiB trim threshold, so
glibc returns them to the kernel when freed and maps fresh zeroed pages for the next
step: ~200 page faults per tensor, 1.5 million per second of training (NOTES row 12).
Setting both thresholds once per process keeps those buffers in the heap, where the next
step reuses them:

* ``M_MMAP_THRESHOLD`` = 32 MiB (glibc's maximum): blocks up to 32 MiB come from the heap;
* ``M_TRIM_THRESHOLD`` = 1 GiB: freed memory at the top of the heap stays mapped.

The cost is that the process keeps its peak heap (the trainer's own peak, which it reaches
every step anyway). A P = 1 trainer's tensors (51 KB) were below both thresholds already,
so this changes nothing for it. Set ``NASDUN_CPU_HEAP=system`` to keep the C library's
defaults; on another C library (macOS, musl) nothing is changed and :func:`heap_policy`
says so.
"""

from __future__ import annotations

import ctypes
import os

from nasdun.core.errors import NasdunError

M_TRIM_THRESHOLD = -1  # glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20
TRIM_THRESHOLD = 2**30
ENV = "NASDUN_CPU_HEAP"

_policy: str | None = None


def requested_policy() -> str:
    """``NASDUN_CPU_HEAP`` checked: 'retain' (the default) or 'system'."""
    choice = os.environ.get(ENV, "retain")
    if choice not in ("retain", "system"):
        raise NasdunError(f"{ENV}={choice!r}; expected 'retain' (keep freed buffers in the heap) or 'system'")
    return choice


def keep_freed_memory() -> str:
    """Apply the heap policy once per process; return it (see the module docstring)."""
    global _policy
    if _policy is not None:
        return _policy
    if requested_policy() == "system":
        _policy = "system default"
        return _policy
    libc = ctypes.CDLL(None)  # the symbols already loaded into this process, the C library's included
    if not (hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version")):
        _policy = "system default (this C library is not glibc)"
    elif libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1:
        _policy = f"glibc mallopt: mmap threshold {MMAP_THRESHOLD >> 20} MiB, trim threshold {TRIM_THRESHOLD >> 30} GiB"
    else:
        _policy = "system default (glibc refused the thresholds)"
    return _policy


def heap_policy() -> str:
    """The policy this process runs under ('not set' before any CPU trainer was built)."""
    return _policy or "not set"
