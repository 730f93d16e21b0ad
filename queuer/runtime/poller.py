"""Poller: claims jobs when there is room, woken by NOTIFY, with a polling fallback."""

from __future__ import annotations

import logging
from typing import Callable, Sequence
from uuid import UUID

from database.job_db import JobDB
from queuer.runtime.dispatcher import Dispatcher
from queuer.runtime.loop import BackgroundLoop

log = logging.getLogger("queuer.poller")


class Poller(BackgroundLoop):
    def __init__(
        self,
        job_db: JobDB,
        dispatcher: Dispatcher,
        worker_rid: Callable[[], UUID],
        task_names: Callable[[], Sequence[str]],
        poll_interval: float,
        default_max_attempts: int,
        default_timeout: float | None,
    ) -> None:
        super().__init__("poller")
        self.job_db = job_db
        self.dispatcher = dispatcher
        self.worker_rid = worker_rid
        self.task_names = task_names
        self.interval = poll_interval
        self.default_max_attempts = default_max_attempts
        self.default_timeout = default_timeout
        self.claimed_total = 0

    def tick(self) -> float | None:
        if not self.dispatcher.accepting:
            return None
        room = self.dispatcher.capacity()
        names = self.task_names()
        if room <= 0 or not names:
            return None  # a finishing job wakes us
        jobs = self.job_db.claim(self.worker_rid(), names, room, self.default_max_attempts, self.default_timeout)
        if jobs:
            self.claimed_total += len(jobs)
            if self.stopping or not self.dispatcher.accepting:
                # Stopped while claiming: give them straight back.
                self.job_db.release(self.worker_rid(), [(j.id, j.attempt) for j in jobs])
                return None
            self.dispatcher.submit(jobs)
        if len(jobs) == room:
            return 0.0  # there may be more: claim again as soon as there is room
        # The queue is drained for now: sleep until NOTIFY, the next scheduled
        # job's due time, or the polling fallback, whichever comes first.
        due_in = self.job_db.seconds_until_next_due(names)
        return self.interval if due_in is None else min(self.interval, due_in)
