"""PrefetchSizer: how many claimed jobs a worker keeps waiting for a free thread.

By Little's law, the jobs needed to cover a claim's round trip are the rate at
which this worker finishes jobs times that round trip. The sizer measures
both as the worker runs and keeps the buffer a few round trips deep, between
0 and a cap: noop jobs get a deep buffer (claims are few and large), while a
worker whose jobs take minutes keeps none, so a long job never waits in one
worker's buffer while another worker idles. ``QUEUER_PREFETCH`` fixes it instead.
"""

from __future__ import annotations

import math
import time

# Keep this many claim round trips of work buffered.
ROUND_TRIPS = 4
# Rates are measured over windows of this length, smoothed across windows.
WINDOW_SECONDS = 0.1
SMOOTHING = 0.5


class PrefetchSizer:
    def __init__(self, max_concurrency: int, fixed: int | None = None) -> None:
        self.fixed = fixed
        self.cap = max(256, 20 * max_concurrency)
        self.target = fixed if fixed is not None else 0
        self._rate = 0.0  # jobs finished per second
        self._round_trip = 0.001  # seconds per claim
        self._window_start = time.monotonic()
        self._window_count = 0

    def finished(self, count: int = 1) -> None:
        """A job ended here (called under the dispatcher's lock)."""
        self._window_count += count
        self._roll()

    def claimed(self, seconds: float) -> None:
        """A claim took ``seconds`` from request to reply."""
        self._round_trip = SMOOTHING * seconds + (1 - SMOOTHING) * self._round_trip
        self._resize()

    def current(self) -> int:
        """The target now: a window without finished jobs lowers the rate, so a lull empties the buffer."""
        self._roll()
        return self.target

    def _roll(self) -> None:
        now = time.monotonic()
        elapsed = now - self._window_start
        if elapsed >= WINDOW_SECONDS:
            rate = self._window_count / elapsed
            self._rate = SMOOTHING * rate + (1 - SMOOTHING) * self._rate
            self._window_start, self._window_count = now, 0
            self._resize()

    def _resize(self) -> None:
        if self.fixed is None:
            self.target = min(self.cap, math.ceil(self._rate * self._round_trip * ROUND_TRIPS))
