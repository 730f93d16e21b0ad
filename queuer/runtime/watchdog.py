"""Watchdog: ends attempts that run past their ``OnError.timeout``."""

from __future__ import annotations

from queuer.runtime.dispatcher import Dispatcher
from queuer.runtime.loop import BackgroundLoop

# Deadlines are checked at least this often even when none is near, so a job
# that started after the last check is seen in time.
MAX_SLEEP = 0.1


class Watchdog(BackgroundLoop):
    def __init__(self, dispatcher: Dispatcher) -> None:
        super().__init__("watchdog")
        self.dispatcher = dispatcher

    def tick(self) -> float | None:
        next_in = self.dispatcher.expire_timeouts()
        return MAX_SLEEP if next_in is None else min(MAX_SLEEP, next_in)
