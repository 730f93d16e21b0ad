"""Backoff: the growing, jittered delay between retries of something that failed.

One kind serves every retry loop (opening a connection, the session's
reconnect, a background loop whose tick raised), so they all recover at the
same pace: fast at first, because a failover or a restart is over within
seconds, and never slower than the ceiling, because nothing gives up for good.
"""

from __future__ import annotations

import random


class Backoff:
    """Delays ``first``, ``first * factor``, ... up to ``ceiling``; ``reset()`` after a success.

    Each delay is spread by up to ``jitter`` of itself, so processes that lost
    the server together do not knock on it together.
    """

    def __init__(self, first: float = 0.05, ceiling: float = 1.0, factor: float = 2.0, jitter: float = 0.2) -> None:
        if not 0 < first <= ceiling:
            raise ValueError(f"a backoff needs 0 < first <= ceiling, not first={first!r}, ceiling={ceiling!r}")
        self.first = first
        self.ceiling = ceiling
        self.factor = factor
        self.jitter = jitter
        self._next = first

    def next(self) -> float:
        """The delay to wait now; the one after it grows."""
        delay = self._next
        self._next = min(self._next * self.factor, self.ceiling)
        if self.jitter:
            delay *= 1.0 - self.jitter * random.random()
        return delay

    def reset(self) -> None:
        self._next = self.first
