"""A worker process as stored in the ``worker`` table."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any
from uuid import UUID

from queuer.model.options import OnError


class WorkerStatus(str, Enum):
    """Where a worker is in its life, from READY (registered) to STOPPED or DEAD.

    Each member is also its name as a string (``WorkerStatus.READY == "READY"``).
    """

    READY = "READY"
    """Created, not yet claiming."""
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"
    """Asked to stop; finishing in-flight jobs."""
    STOPPED = "STOPPED"
    DEAD = "DEAD"
    """Heartbeat went silent; its jobs were rescued."""


@dataclass
class Worker:
    """A worker as stored in the ``worker`` table: one queuer's row, with the tasks it can run.

    A queuer registers its row when it is created (READY) and makes it RUNNING with ``start()``.
    ``Queuer.worker``, ``get_worker`` and ``get_workers`` return them.
    """

    rid: UUID
    name: str
    status: WorkerStatus
    max_concurrency: int
    available_tasks: list[str] = field(default_factory=list)
    available_next_interval_funcs: list[str] = field(default_factory=list)
    options: OnError | None = None
    """The worker's default ``OnError`` for jobs that bring none."""
    host: str | None = None
    pid: int | None = None
    id: int | None = None
    heartbeat_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    stop_requested: str | None = None
    """A stop asked with ``stop_worker`` ("now") or ``stop_worker_gracefully`` ("graceful"); None when none was."""

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Worker:
        return cls(
            id=row.get("id"),
            rid=row["rid"],
            name=row["name"],
            status=WorkerStatus(row["status"]),
            max_concurrency=row["max_concurrency"],
            available_tasks=list(row.get("available_tasks") or []),
            available_next_interval_funcs=list(row.get("available_next_interval") or []),
            options=_on_error_of(row.get("options")),
            host=row.get("host"),
            pid=row.get("pid"),
            heartbeat_at=row.get("heartbeat_at"),
            created_at=row.get("created_at"),
            updated_at=row.get("updated_at"),
            stop_requested=row.get("stop_requested"),
        )


def _on_error_of(stored: Any) -> OnError | None:
    if not isinstance(stored, dict):
        return None
    try:
        return OnError.from_dict(stored.get("on_error", stored))
    except (TypeError, ValueError, AttributeError):
        return None  # a row edited by hand stays readable
