"""WorkerDB: the ``worker`` rows, heartbeats, stop requests and the master lease."""

from __future__ import annotations

import builtins
import json
import os
import socket
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from queuer.database.connection import Database
from queuer.model.worker import Worker, WorkerStatus


@dataclass(frozen=True)
class LivenessLimits:
    """Seconds that decide when the master declares a worker dead (see mark_dead_workers)."""

    grace: float
    hung_after: float
    dead_after: float
    restart_grace: float


def liveness_lock_space(schema: str) -> int:
    """The first key of every worker's liveness lock in this schema (the second is the worker's id)."""
    return zlib.crc32(f"queuer.liveness.{schema}".encode()) & 0x7FFFFFFF


class WorkerDB:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.q = db.queries
        self.lock_space = liveness_lock_space(db.schema)

    def count_by_status(self) -> list[tuple[str, int]]:
        return [(r["status"], r["n"]) for r in self.db.execute(self.q.count_workers_by_status)]

    def insert(
        self,
        rid: UUID,
        name: str,
        max_concurrency: int,
        task_names: Sequence[str],
        options: dict[str, Any] | None,
        status: WorkerStatus = WorkerStatus.RUNNING,
    ) -> Worker:
        row = self.db.execute_one(
            self.q.insert_worker,
            {
                "rid": rid,
                "name": name,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "max_concurrency": max_concurrency,
                "available_tasks": list(task_names),
                "options": json.dumps(options) if options else None,
                "status": status.value,
            },
        )
        assert row is not None
        return Worker.from_row(row)

    def activate(
        self, rid: UUID, name: str, max_concurrency: int, task_names: Sequence[str], options: dict[str, Any] | None,
        liveness: str,
    ) -> Worker:
        """Mark this process's worker row RUNNING (made again if it was pruned)."""
        row = self.db.execute_one(self.q.activate_worker, {
            "rid": rid, "name": name, "host": socket.gethostname(), "pid": os.getpid(),
            "max_concurrency": max_concurrency, "available_tasks": list(task_names),
            "options": json.dumps(options) if options else None, "liveness": liveness,
        })
        assert row is not None
        return Worker.from_row(row)

    def update_tasks(self, rid: UUID, task_names: Sequence[str]) -> Worker | None:
        row = self.db.execute_one(self.q.update_worker_tasks, {"rid": rid, "available_tasks": list(task_names)})
        return Worker.from_row(row) if row else None

    def update_next_interval_funcs(self, rid: UUID, names: Sequence[str]) -> Worker | None:
        row = self.db.execute_one(self.q.update_worker_next_interval, {"rid": rid, "names": list(names)})
        return Worker.from_row(row) if row else None

    def set_status(self, rid: UUID, status: WorkerStatus) -> Worker | None:
        row = self.db.execute_one(self.q.set_worker_status, {"rid": rid, "status": status.value})
        return Worker.from_row(row) if row else None

    def heartbeat(self, rid: UUID) -> tuple[WorkerStatus, str | None] | None:
        """Renew the heartbeat; None when the master declared this worker dead."""
        row = self.db.execute_one(self.q.heartbeat, {"rid": rid})
        return (WorkerStatus(row["status"]), row["stop_requested"]) if row else None

    def request_stop(self, rid: UUID, graceful: bool) -> Worker | None:
        """Ask a worker to stop; its row shows STOPPED (now) or STOPPING (graceful) at once."""
        row = self.db.execute_one(
            self.q.request_worker_stop,
            {"rid": rid, "mode": "graceful" if graceful else "now", "channel": self.db.channel},
        )
        return Worker.from_row(row) if row else None

    def get(self, rid: UUID) -> Worker | None:
        row = self.db.execute_one(self.q.get_worker, {"rid": rid})
        return Worker.from_row(row) if row else None

    def list(self, status: WorkerStatus | None = None, limit: int = 100, offset: int = 0) -> builtins.list[Worker]:
        rows = self.db.execute(
            self.q.get_workers, {"status": status.value if status else None, "limit": limit, "offset": offset}
        )
        return [Worker.from_row(r) for r in rows]

    def task_known(self, task_name: str) -> bool:
        """True when any worker, past or present, registered this task."""
        row = self.db.execute_one(self.q.task_known, {"task_name": task_name})
        return bool(row and row["known"])

    # -- master ---------------------------------------------------------------

    def acquire_master(self, rid: UUID, lease_seconds: float) -> bool:
        row = self.db.execute_one(self.q.acquire_master_lease, {
            "rid": rid, "lease_seconds": lease_seconds, "lock_space": self.lock_space})
        return row is not None

    def release_master(self, rid: UUID) -> None:
        self.db.execute(self.q.release_master_lease, {"rid": rid})

    def mark_dead(self, limits: LivenessLimits, reachable_since: datetime | None) -> builtins.list[tuple[UUID, str, str]]:
        """The master's liveness pass; (rid, name, liveness) of the workers it declared DEAD."""
        rows = self.db.execute(self.q.mark_dead_workers, {
            "lock_space": self.lock_space, "reachable_since": reachable_since,
            "grace": limits.grace, "hung_after": limits.hung_after, "dead_after": limits.dead_after,
            "restart_grace": limits.restart_grace,
        })
        return [(r["rid"], r["name"], r["liveness"]) for r in rows if r["dead"]]

    def now(self) -> datetime:
        """The database's clock."""
        row = self.db.execute_one(self.q.db_now)
        assert row is not None
        now: datetime = row["db_now"]
        return now

    def prune(self, older_than_seconds: float) -> None:
        self.db.execute(self.q.prune_workers, {"older_than_seconds": older_than_seconds})
