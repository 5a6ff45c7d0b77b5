"""Progress: counts, percentage and rate of a long command, written to a terminal or a log."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import TextIO

BAR_WIDTH = 24
# Without a terminal (CI, a redirected stderr), one line at most this often keeps logs short.
LINE_INTERVAL_SECONDS = 5.0


class Progress:
    """Thread-safe progress of `total` items, each ending with an outcome ("created", …).

    On a TTY one line is redrawn in place at every step; otherwise a line is written at most
    every `interval` seconds, and `finish()` writes the last one.
    """

    def __init__(
        self,
        total: int,
        *,
        stream: TextIO,
        label: str = "rows",
        interval: float = LINE_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.outcomes: Counter[str] = Counter()
        self._stream = stream
        self._label = label
        self._interval = interval
        self._clock = clock
        self._started = clock()
        self._last_line: float | None = None
        self._last_done: int | None = None
        self._tty = stream.isatty()
        self._width = 0
        self._lock = threading.Lock()

    @property
    def done(self) -> int:
        return self.outcomes.total()

    def advance(self, outcome: str) -> None:
        with self._lock:
            self.outcomes[outcome] += 1
            now = self._clock()
            if self._tty:
                self._redraw(now)
            elif self._last_line is None or now - self._last_line >= self._interval:
                self._write_line(now)

    def finish(self) -> None:
        with self._lock:
            now = self._clock()
            if self._tty:
                self._redraw(now)
                self._stream.write("\n")
            elif self._last_done != self.done or self._last_line is None:
                self._write_line(now)
            self._stream.flush()

    def render(self, now: float) -> str:
        """The progress line at time `now` (same clock as the constructor's)."""
        done = self.done
        fraction = done / self.total if self.total else 1.0
        filled = round(BAR_WIDTH * fraction)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        elapsed = max(now - self._started, 1e-9)
        counts = ", ".join(f"{name} {count}" for name, count in sorted(self.outcomes.items()))
        line = f"[{bar}] {done}/{self.total} {self._label} {fraction:4.0%}"
        if counts:
            line += f" | {counts}"
        return line + f" | {done / elapsed:.1f}/s"

    def _redraw(self, now: float) -> None:
        line = self.render(now)
        # Pad over the previous line's tail: counts only grow, but be safe.
        self._stream.write("\r" + line.ljust(self._width))
        self._width = len(line)
        self._stream.flush()

    def _write_line(self, now: float) -> None:
        self._stream.write(self.render(now) + "\n")
        self._stream.flush()
        self._last_line = now
        self._last_done = self.done
