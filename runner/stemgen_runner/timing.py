"""Step timings for `status.timings`: how long each stage of a run took, in seconds."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class Stopwatch:
    def __init__(self) -> None:
        self.started = time.monotonic()
        self.seconds: dict[str, float] = {}

    @contextmanager
    def measure(self, name: str) -> Iterator[None]:
        """Records the step even when it raises, so a Failed status shows where the time went."""
        start = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = round(time.monotonic() - start, 3)

    def timings(self) -> dict[str, float]:
        return {**self.seconds, "totalSeconds": round(time.monotonic() - self.started, 3)}
