"""``queuer dashboard``: a live terminal view that fits in 80 columns."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import TextIO

import psycopg
from psycopg.rows import tuple_row

from queuer.config.database import quote_identifier

WIDTH = 80


@dataclass
class TaskRow:
    task: str
    queued: int = 0
    scheduled: int = 0
    running: int = 0
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


def take_snapshot(conn: psycopg.Connection, schema: str) -> Snapshot:
    s = quote_identifier(schema)
    cur = conn.cursor(row_factory=tuple_row)
    tasks: dict[str, TaskRow] = {}
    for task, status, n in cur.execute(f"SELECT task_name, status, count(*) FROM {s}.job GROUP BY 1, 2"):
        row = tasks.setdefault(task, TaskRow(task))
        setattr(row, status.lower(), n)
    for task, status, n in cur.execute(
        f"SELECT task_name, status, count(*) FROM {s}.job_archive "
        "WHERE ended_at > now() - interval '1 minute' AND status <> 'CANCELLED' GROUP BY 1, 2"
    ):
        row = tasks.setdefault(task, TaskRow(task))
        if status == "SUCCEEDED":
            row.succeeded_1m = n
        else:
            row.failed_1m = n
    failed = cur.execute(
        f"SELECT count(*) FROM {s}.job_archive WHERE status = 'FAILED' AND ended_at > now() - interval '1 hour'"
    ).fetchone()
    workers = [
        WorkerRow(name, status, running, float(age))
        for name, status, running, age in cur.execute(
            f"SELECT w.name, w.status, (SELECT count(*) FROM {s}.job j WHERE j.worker_rid = w.rid "
            "AND j.status = 'RUNNING'), extract(epoch FROM now() - w.heartbeat_at) "
            f"FROM {s}.worker w WHERE w.status IN ('READY', 'RUNNING', 'STOPPING') "
            "OR w.updated_at > now() - interval '5 minutes' ORDER BY w.name"
        )
    ]
    return Snapshot(schema, sorted(tasks.values(), key=lambda t: t.task), workers, int(failed[0]) if failed else 0)


def render(snap: Snapshot) -> str:
    lines = [
        f"queuer dashboard · schema {snap.schema} · {time.strftime('%H:%M:%S')}"[:WIDTH],
        f"throughput {snap.jobs_per_second:,.1f} jobs/s (last minute) · failed last hour {snap.failed_1h}"[:WIDTH],
        "",
        f"{'task':<28}{'queued':>9}{'sched':>8}{'running':>9}{'done/1m':>9}{'fail/1m':>9}",
    ]
    for t in snap.tasks:
        lines.append(f"{t.task[:27]:<28}{t.queued:>9}{t.scheduled:>8}{t.running:>9}{t.succeeded_1m:>9}{t.failed_1m:>9}")
    if not snap.tasks:
        lines.append("(no jobs)")
    lines += ["", f"{'worker':<30}{'status':<10}{'running':>9}{'heartbeat':>12}"]
    for w in snap.workers:
        lines.append(f"{w.name[:29]:<30}{w.status:<10}{w.running:>9}{w.heartbeat_age:>11.1f}s")
    if not snap.workers:
        lines.append("(no workers)")
    return "\n".join(line[:WIDTH] for line in lines)


def run_dashboard(conn: psycopg.Connection, schema: str, interval: float, once: bool,
                  out: TextIO = sys.stdout) -> None:
    try:
        while True:
            frame = render(take_snapshot(conn, schema))
            if once:
                print(frame, file=out)
                return
            # Home the cursor and clear: the view is redrawn in place.
            print("\x1b[H\x1b[2J" + frame + "\n\n(Ctrl-C to quit)", file=out, flush=True)
            time.sleep(interval)
    except KeyboardInterrupt:
        print(file=out)
