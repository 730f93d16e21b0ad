"""MasterLoop: elects one master (a leased row) and runs its duties.

Whichever worker holds the unexpired lease is master. A master that dies is
replaced at the next tick of any other worker: the lease is taken over as
soon as its holder's liveness lock is free (or its row is DEAD), not when the
lease runs out. Every ``liveness_interval`` the master judges liveness (see
``mark_dead_workers`` in worker.sql) and re-queues the RUNNING jobs of dead
workers; now and then it prunes old worker rows and the archive.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from uuid import UUID

from queuer.config.settings import WorkerSettings
from queuer.database.attempt_db import AttemptDB
from queuer.database.worker_db import LivenessLimits, WorkerDB
from queuer.runtime.loop import BackgroundLoop

log = logging.getLogger("queuer.master")

ARCHIVE_PRUNE_BATCH = 1000
# Jobs of workers that vanished without being declared dead (a pruned row) are swept this often.
SWEEP_SECONDS = 5.0
HOUSEKEEPING_SECONDS = 10.0


class MasterLoop(BackgroundLoop):
    def __init__(
        self,
        worker_db: WorkerDB,
        attempt_db: AttemptDB,
        worker_rid: Callable[[], UUID],
        settings: WorkerSettings,
    ) -> None:
        super().__init__("master")
        self.worker_db = worker_db
        self.attempt_db = attempt_db
        self.worker_rid = worker_rid
        self.settings = settings
        self.limits = LivenessLimits(
            grace=settings.liveness_grace, hung_after=settings.hung_after,
            dead_after=settings.dead_after, restart_grace=settings.restart_grace,
        )
        self.archive_pruned_total = 0
        self.interval = settings.liveness_interval
        self.is_master = False
        self._renew_at = 0.0
        self._sweep_at = 0.0
        self._housekeeping_at = 0.0
        # Silence is counted only from when this process could reach the database.
        self._reachable_since: datetime | None = None
        self._lost_database = True

    def tick(self) -> float | None:
        try:
            return self._duties()
        except Exception:
            self._lost_database = True
            raise

    def _duties(self) -> float | None:
        now = time.monotonic()
        if self._lost_database:
            self._reachable_since = self.worker_db.now()
            self._lost_database = False
        if not self.is_master or now >= self._renew_at:
            was_master = self.is_master
            self.is_master = self.worker_db.acquire_master(self.worker_rid(), self.settings.master_lease)
            self._renew_at = now + self.settings.master_lease / 4
            if self.is_master != was_master:
                log.info("this worker %s master", "became" if self.is_master else "is no longer")
        if not self.is_master:
            return None
        dead = self.worker_db.mark_dead(self.limits, self._reachable_since)
        for rid, name, liveness in dead:
            how = "its session closed" if liveness == "session" else "its heartbeat stopped"
            log.warning("worker %s (%s) is gone (%s); marked DEAD", name, rid, how)
        if dead or now >= self._sweep_at:
            requeued, failed = self.attempt_db.rescue_orphans()
            if requeued or failed:
                log.warning("rescued jobs of dead workers: %d re-queued, %d failed (crash budget spent)",
                            requeued, failed)
            self._sweep_at = now + SWEEP_SECONDS
        if now >= self._housekeeping_at:
            self._housekeeping_at = now + HOUSEKEEPING_SECONDS
            self.worker_db.prune(self.settings.prune_workers_after)
            # Partitions ahead of time, and whole partitions past the retention dropped (one DDL each).
            created, dropped = self.attempt_db.maintain_archive(self.settings.archive_partition,
                                                            self.settings.archive_retention)
            if dropped:
                log.info("dropped %d archive partition(s) older than the retention", dropped)
            if self.settings.archive_retention is not None:
                # One small batch at a time: the archive shrinks steadily without long locks.
                pruned = self.attempt_db.prune_archive(self.settings.archive_retention, ARCHIVE_PRUNE_BATCH)
                self.archive_pruned_total += pruned
                if pruned == ARCHIVE_PRUNE_BATCH:
                    self._housekeeping_at = now  # more to do: go on at the next tick
        return None

    def on_stop(self) -> None:
        if self.is_master:
            self.worker_db.release_master(self.worker_rid())
            self.is_master = False
