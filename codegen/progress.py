"""Progress on stderr for steps that take a while: one line per step, with its duration."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager


class Progress:
    """Reports steps as they finish. Silent when `enabled` is False (the Python API's default)."""

    def __init__(self, enabled: bool = True, stream=None):
        self.enabled = enabled
        self.stream = stream or sys.stderr

    @contextmanager
    def step(self, what: str) -> Iterator[None]:
        start = time.perf_counter()
        if self.enabled:
            self.stream.write(f"  {what} ...")
            self.stream.flush()
        try:
            yield
        except BaseException:
            if self.enabled:
                self.stream.write(" failed\n")
            raise
        if self.enabled:
            self.stream.write(f" {time.perf_counter() - start:.1f}s\n")
            self.stream.flush()

    def bar(self, label: str, total: int) -> Bar:
        return Bar(self, label, total)

    def note(self, text: str) -> None:
        if self.enabled:
            self.stream.write(f"  {text}\n")


SILENT = Progress(enabled=False)


class Bar:
    """`bar(done)` redraws `label [#####.....] done/total, ETA`; one line per update off a terminal."""

    WIDTH = 30

    def __init__(self, progress: Progress, label: str, total: int):
        self.progress, self.label, self.total = progress, label, max(total, 1)
        self.start = time.perf_counter()
        self.tty = bool(getattr(progress.stream, "isatty", lambda: False)())
        self(0)

    def __call__(self, done: int) -> None:
        if not self.progress.enabled:
            return
        elapsed = time.perf_counter() - self.start
        filled = self.WIDTH * done // self.total
        eta = f", ETA {_duration(elapsed / done * (self.total - done))}" if 0 < done < self.total else ""
        line = (f"  {self.label} [{'#' * filled}{'.' * (self.WIDTH - filled)}] {done}/{self.total}"
                f" {_duration(elapsed)}{eta}")
        self.progress.stream.write(("\r" + line) if self.tty else line + "\n")
        self.progress.stream.flush()

    def close(self) -> None:
        if self.progress.enabled and self.tty:
            self.progress.stream.write("\n")


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"

