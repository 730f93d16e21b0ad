"""What the ``queuer`` command reads for an operator: the dashboard's numbers, a host's
worker health, the database clock, and the schema's NOTIFY events."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import dict_row, tuple_row

from queuer.database.connection import Database, channel_name
from queuer.database.statements import Queries
from queuer.database.worker_db import WorkerDB, liveness_lock_space


@dataclass
class TaskRow:
    task: str
    queued: int = 0
    scheduled: int = 0
    running: int = 0
    waiting: int = 0
    succeeded_1m: int = 0
    failed_1m: int = 0


@dataclass
class WorkerRow:
    name: str
    status: str
    running: int
    heartbeat_age: float


@dataclass
class Snapshot:
    schema: str
    tasks: list[TaskRow] = field(default_factory=list)
    workers: list[WorkerRow] = field(default_factory=list)
    failed_1h: int = 0

    @property
    def jobs_per_second(self) -> float:
        return sum(t.succeeded_1m + t.failed_1m for t in self.tasks) / 60.0


def take_snapshot(conn: psycopg.Connection[Any], schema: str) -> Snapshot:
    """Jobs per task and status, the last minute's outcomes, the last hour's failures, the workers."""
    queries = Queries(schema)
    cur = conn.cursor(row_factory=tuple_row)
    tasks: dict[str, TaskRow] = {}
    for task, status, n in cur.execute(queries.count_jobs_by_task_and_status):
        row = tasks.setdefault(task, TaskRow(task))
        setattr(row, status.lower(), n)
    for task, status, n in cur.execute(queries.count_ended_last_minute_by_task):
        row = tasks.setdefault(task, TaskRow(task))
        if status == "SUCCEEDED":
            row.succeeded_1m = n
        else:
            row.failed_1m = n
    failed = cur.execute(queries.count_failed_last_hour).fetchone()
    workers = [
        WorkerRow(name, status, running, float(age))
        for name, status, running, age in cur.execute(queries.list_recent_workers)
    ]
    return Snapshot(schema, sorted(tasks.values(), key=lambda t: t.task), workers, int(failed[0]) if failed else 0)


@dataclass(frozen=True)
class WorkerHealth:
    """One worker of a host, as ``queuer health`` judges it."""

    rid: UUID
    name: str
    pid: int
    status: str
    locked: bool
    """Its liveness lock is held: the worker's session is up, however busy it is."""
    silent_seconds: float


def worker_health(conn: psycopg.Connection[Any], schema: str, host: str, name: str | None) -> list[WorkerHealth]:
    """The workers of ``host`` (only those named ``name``, if given), newest first, at most 20."""
    rows = conn.cursor(row_factory=dict_row).execute(Queries(schema).worker_health, {
        "host": host, "name": name, "lock_space": liveness_lock_space(schema)}).fetchall()
    return [WorkerHealth(r["rid"], r["name"], r["pid"], r["status"], r["locked"], r["silent_seconds"]) for r in rows]


def task_known(db: Database, task_name: str) -> bool:
    """True when any worker, past or present, registered this task."""
    return WorkerDB(db).task_known(task_name)


def database_now(db: Database) -> datetime:
    """The database's clock (ages shown against it do not depend on this host's clock)."""
    row = db.execute_one(db.queries.db_now)
    assert row is not None
    now: datetime = row["db_now"]
    return now


def listen(conn: psycopg.Connection[Any], schema: str) -> str:
    """LISTEN on the schema's channel (its events then arrive by ``conn.notifies()``); return the channel."""
    channel = channel_name(schema)
    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
    return channel
