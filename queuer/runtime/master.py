"""MasterLoop: elects one master (a leased row) and runs its duties.

Whichever worker holds the unexpired lease is master; if it dies the lease
runs out and another takes it within ``lease_seconds``. The master marks
workers whose heartbeat is older than ``dead_after`` as DEAD, re-queues the
RUNNING jobs of dead or stopped workers (or fails them when no attempt is
left), and prunes old worker rows.
"""

from __future__ import annotations

import logging
from typing import Callable
from uuid import UUID

from queuer.database.job_db import JobDB
from queuer.database.worker_db import WorkerDB
from queuer.runtime.loop import BackgroundLoop

log = logging.getLogger("queuer.master")

ARCHIVE_PRUNE_BATCH = 1000


class MasterLoop(BackgroundLoop):
    def __init__(
        self,
        worker_db: WorkerDB,
        job_db: JobDB,
        worker_rid: Callable[[], UUID],
        lease_seconds: float,
        dead_after: float,
        prune_after: float,
        archive_retention: float | None = None,
    ) -> None:
        super().__init__("master")
        self.worker_db = worker_db
        self.job_db = job_db
        self.worker_rid = worker_rid
        self.lease_seconds = lease_seconds
        self.dead_after = dead_after
        self.prune_after = prune_after
        self.archive_retention = archive_retention
        self.archive_pruned_total = 0
        self.interval = max(0.2, min(lease_seconds / 3, dead_after / 3))
        self.is_master = False

    def tick(self) -> float | None:
        was_master = self.is_master
        self.is_master = self.worker_db.acquire_master(self.worker_rid(), self.lease_seconds)
        if self.is_master != was_master:
            log.info("this worker %s master", "became" if self.is_master else "is no longer")
        if not self.is_master:
            return None
        for rid, name in self.worker_db.mark_silent_dead(self.dead_after):
            log.warning("worker %s (%s) stopped heartbeating; marked DEAD", name, rid)
        requeued, failed = self.job_db.rescue_orphans()
        if requeued or failed:
            log.warning("rescued jobs of dead workers: %d re-queued, %d failed (no attempt left)", requeued, failed)
        self.worker_db.prune(self.prune_after)
        if self.archive_retention is not None:
            # One small batch per tick: the archive shrinks steadily without long locks.
            pruned = self.job_db.prune_archive(self.archive_retention, ARCHIVE_PRUNE_BATCH)
            self.archive_pruned_total += pruned
            if pruned == ARCHIVE_PRUNE_BATCH:
                return 0.0  # more to do: go on at once
        return None

    def on_stop(self) -> None:
        if self.is_master:
            self.worker_db.release_master(self.worker_rid())
            self.is_master = False
