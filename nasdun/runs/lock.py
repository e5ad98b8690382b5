"""One writer per run directory: an exclusive lock held for the life of the process that writes it.

``DIR/.nasdun.lock`` is locked with ``fcntl.flock`` (the kernel drops the lock when its holder
exits, even by SIGKILL, so a dead holder never blocks a resume) and holds the holder's PID for
the error message. The lock is re-entrant within one process (a search holds it while it also
promotes). Analysis commands only read and take no lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from nasdun.core.errors import NasdunError

LOCK_NAME = ".nasdun.lock"
_held: dict[Path, tuple[int, int]] = {}  # resolved run directory -> (file descriptor, depth)


@contextlib.contextmanager
def run_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold ``run_dir``'s writer lock for the block; a one-line error if another process holds it."""
    key = Path(run_dir).resolve()
    if key in _held:
        fd, depth = _held[key]
        _held[key] = (fd, depth + 1)
        try:
            yield
        finally:
            _held[key] = (fd, _held[key][1] - 1)
        return
    key.mkdir(parents=True, exist_ok=True)
    fd = os.open(key / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise NasdunError(
            f"run directory {str(run_dir)!r} is being written by another nasdun process (PID {holder}); wait for it to end or stop it"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held[key] = (fd, 1)
    try:
        yield
    finally:
        del _held[key]
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
