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

    def note(self, text: str) -> None:
        if self.enabled:
            self.stream.write(f"  {text}\n")


SILENT = Progress(enabled=False)
