"""Heartbeat: keeps this worker's row alive and watches the worker's health.

Each tick renews ``heartbeat_at`` on the database clock, reacts to a stop
request from another process, and, when the master has declared this worker
dead, drops every attempt it holds (their jobs were rescued elsewhere). Every
few ticks it reconciles: a RUNNING job the database says this worker holds,
but the worker does not know (a claim whose reply was lost), is released.

While the worker's session (and so its liveness lock) is down, it beats
every FAST_INTERVAL instead, so the master sees a live worker reconnecting,
not a dead one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol
from uuid import UUID

from queuer.database.attempt_db import AttemptDB
from queuer.database.worker_db import WorkerDB
from queuer.runtime.loop import BackgroundLoop

log = logging.getLogger("queuer.heartbeat")

FAST_INTERVAL = 0.25


class WorkerRuntimeLike(Protocol):
    """The part of WorkerRuntime the heartbeat drives."""

    @property
    def worker_rid(self) -> UUID: ...
    def restart_dead_loops(self) -> None: ...
    def declared_dead(self) -> None: ...
    def stop_requested(self, graceful: bool) -> None: ...
    def held(self) -> list[tuple[int, int]]: ...
    def running(self) -> list[tuple[int, int]]: ...
    def lost_attempt(self, job_id: int, reason: str) -> None: ...


class Heartbeat(BackgroundLoop):
    def __init__(
        self,
        worker_db: WorkerDB,
        attempt_db: AttemptDB,
        runtime: WorkerRuntimeLike,
        interval: float,
        session_ok: Callable[[], bool] = lambda: True,
        reconcile_every: int = 5,
        watch_cancels: bool = False,
    ) -> None:
        super().__init__("heartbeat")
        self.worker_db = worker_db
        self.attempt_db = attempt_db
        self.runtime = runtime
        self.interval = interval
        self.session_ok = session_ok
        # Without a session no NOTIFY says a running job was cancelled: look at each beat.
        self.watch_cancels = watch_cancels
        self.reconcile_every = reconcile_every
        self._ticks = 0
        self._suspects: set[tuple[int, int]] = set()

    def tick(self) -> float | None:
        self.runtime.restart_dead_loops()
        state = self.worker_db.heartbeat(self.runtime.worker_rid)
        if state is None:
            self.runtime.declared_dead()
            return 0.0
        _status, stop_requested = state
        if stop_requested:
            self.runtime.stop_requested(graceful=stop_requested == "graceful")
            return None
        self._ticks += 1
        if self.watch_cancels:
            self._end_vanished()
        if self._ticks % self.reconcile_every == 0:
            self._reconcile()
        return None if self.session_ok() else FAST_INTERVAL

    def _end_vanished(self) -> None:
        # Memory first: an attempt that ends meanwhile is already ended below (a no-op).
        running = self.runtime.running()
        if not running:
            return
        in_db = set(self.attempt_db.held_by(self.runtime.worker_rid))
        for job_id, attempt in running:
            if (job_id, attempt) not in in_db:
                self.runtime.lost_attempt(job_id, "cancelled, or taken from this worker")

    def _reconcile(self) -> None:
        # Memory first: an attempt that ends between the two reads is then at
        # worst suspected once, and gone from the database by the next round.
        known = set(self.runtime.held())
        in_db = set(self.attempt_db.held_by(self.runtime.worker_rid))
        unknown = in_db - known
        # Only release what stayed unknown over two rounds: a claim may be on its way in.
        lost = unknown & self._suspects
        self._suspects = unknown - lost
        if lost:
            released = self.attempt_db.release(self.runtime.worker_rid, sorted(lost))
            log.warning("released %d job(s) this worker held in the database but not in memory", released)


