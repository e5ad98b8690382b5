"""A small progress line on stderr: redrawn in place on a terminal, one line every few seconds otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def duration(seconds: float) -> str:
    """``75`` -> ``1m15s``; ``inf`` -> ``?``."""
    if seconds != seconds or seconds == float("inf"):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class ProgressLine:
    def __init__(self, label: str, stream: TextIO | None = None, every_s: float = 5.0) -> None:
        self.label, self._stream, self.every_s = label, stream, every_s
        self.tty = self.stream.isatty()
        self._last = 0.0
        self._shown = False

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stderr  # looked up late: Ray Tune pickles the searcher that holds this

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_stream": None}

    def show(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if not force and not self.tty and now - self._last < self.every_s:
            return
        if not force and self.tty and now - self._last < 0.2:
            return
        self._last = now
        line = f"{self.label}: {text}"
        if self.tty:
            self.stream.write("\r\x1b[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        if self.tty and self._shown:
            self.stream.write("\n")
            self.stream.flush()
