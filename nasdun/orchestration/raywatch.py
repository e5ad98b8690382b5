"""Ends a local Ray session with the driver that started it, however the driver ends (SIGKILL included).

    python -m nasdun.orchestration.raywatch DRIVER_PID

(started by :func:`nasdun.orchestration.raycluster.start_ray`, its stdin a pipe from the driver).

Ray's own fate-sharing ends the GCS and the raylet with the driver, but the raylet's agents (``ray::DashboardAgent``,
``ray::RuntimeEnvAgent``) notice their parent's death late and then wait on the dead GCS: they outlived a SIGKILLed
driver by one to two minutes (measured with Ray 2.60). This watcher holds the read end of a pipe whose write end only
the driver holds: end of file means the driver is gone. Until then it notes the driver's descendants every second
(from Linux's ``/proc``; elsewhere it does nothing); then it kills those still running that started when they were
seen (a reused PID is left alone) and exits.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

PROC = Path("/proc")


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent PID, start time in clock ticks) of a live process, from /proc/PID/stat; None once it is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) ": state, ppid, ..., starttime is field 22
    return int(fields[1]), int(fields[19])


def descendants(root: int) -> dict[int, int]:
    """Every live descendant of ``root``: PID -> start time."""
    children: dict[int, list[tuple[int, int]]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (st := _stat(int(entry.name))) is not None:
            children.setdefault(st[0], []).append((int(entry.name), st[1]))
    out: dict[int, int] = {}
    frontier = [root]
    while frontier:
        for pid, start in children.get(frontier.pop(), []):
            if pid not in out:
                out[pid] = start
                frontier.append(pid)
    return out


def watch(driver_pid: int, every_s: float = 1.0) -> int:
    """Note ``driver_pid``'s descendants until stdin ends, then kill those still running; returns how many were killed."""
    if not PROC.is_dir():
        return 0
    gone = threading.Event()

    def wait_for_eof() -> None:
        sys.stdin.buffer.read()  # returns at end of file: the driver has ended (or closed its end)
        gone.set()

    threading.Thread(target=wait_for_eof, daemon=True).start()
    seen: dict[int, int] = {}
    while not gone.wait(every_s):
        for pid, start in descendants(driver_pid).items():
            if pid != os.getpid():
                seen.setdefault(pid, start)
    killed = 0
    for pid, start in seen.items():
        st = _stat(pid)
        if st is not None and st[1] == start:  # the same process, not a later one with its PID
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except OSError:
                pass
    return killed


if __name__ == "__main__":
    watch(int(sys.argv[1]))
