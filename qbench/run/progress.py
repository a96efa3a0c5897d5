"""Progress on a terminal; silence in CI and when output is not a terminal."""

from __future__ import annotations

import os
import sys
from typing import TextIO


class Progress:
    """One status line, rewritten in place, only when ``stream`` is an interactive terminal."""

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = _interactive(self.stream)
        self.label = label
        self._width = 0

    def update(self, text: str) -> None:
        if not self.enabled:
            return
        line = f"{self.label} {text}"
        pad = max(0, self._width - len(line))
        self._width = len(line)
        self.stream.write("\r" + line + " " * pad)
        self.stream.flush()

    def clear(self) -> None:
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0


def _interactive(stream: TextIO) -> bool:
    if os.environ.get("CI") or os.environ.get("QBENCH_NO_PROGRESS"):
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
