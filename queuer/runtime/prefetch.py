"""PrefetchSizer: how many claimed jobs a worker keeps waiting for a free thread.

By Little's law, a worker whose threads are all busy finishes
``max_concurrency / run time`` jobs per second, and the jobs needed to keep
them busy for a while are that rate times the while. The sizer measures the
run time of jobs and the round trip of a claim as the worker runs, and keeps
enough buffered to cover the longer of a few claim round trips, 50 ms, and one
run time up to a second (jobs of equal length finish in waves, and a wave wants
its next jobs at once). So noop jobs get a deep buffer (claims are few and
large), while jobs that take a minute get none: a long job never waits in one
worker's buffer while another worker idles. ``QUEUER_PREFETCH`` fixes it instead.
"""

from __future__ import annotations

import math

ROUND_TRIPS = 4
MIN_HORIZON_SECONDS = 0.05
MAX_HORIZON_SECONDS = 1.0
SMOOTHING = 0.2  # weight of each new measurement


class PrefetchSizer:
    def __init__(self, max_concurrency: int, fixed: int | None = None) -> None:
        self.max_concurrency = max_concurrency
        self.fixed = fixed
        self.cap = max(256, 20 * max_concurrency)
        self.target = fixed if fixed is not None else 0
        self._run_time: float | None = None  # seconds a job takes, smoothed
        self._round_trip = 0.001  # seconds a claim takes, smoothed

    def finished(self, run_time: float) -> None:
        """A job ran for ``run_time`` seconds (called under the dispatcher's lock)."""
        if self._run_time is None:
            self._run_time = run_time
        else:
            self._run_time += SMOOTHING * (run_time - self._run_time)
        self._resize()

    def claimed(self, seconds: float) -> None:
        """A claim took ``seconds`` from request to reply."""
        self._round_trip += SMOOTHING * (seconds - self._round_trip)
        self._resize()

    def _resize(self) -> None:
        if self.fixed is not None or self._run_time is None:
            return
        run_time = max(self._run_time, 1e-6)
        rate = self.max_concurrency / run_time  # jobs per second with every thread busy
        horizon = max(self._round_trip * ROUND_TRIPS, MIN_HORIZON_SECONDS, min(run_time, MAX_HORIZON_SECONDS))
        self.target = min(self.cap, math.floor(rate * horizon))
