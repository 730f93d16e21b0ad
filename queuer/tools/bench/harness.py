"""What every measurement stands on: the settings, the figures and the helpers of a bench run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import psycopg

from queuer.client.factory import new_queuer_with_db
from queuer.client.queuer import Queuer
from queuer.config.database import DatabaseConfiguration
from queuer.database.statements import Queries
from queuer.model.batch_job import BatchJob
from queuer.tools.bench.tasks import noop, sleep_for, started_at

# The module ``python -m`` runs as a worker process: this package's __main__.
WORKER_MODULE = "queuer.tools.bench"


@dataclass
class BenchSettings:
    jobs: int = 20_000
    concurrency: int = 10
    processes: tuple[int, ...] = (1, 2, 4)
    latency_samples: int = 300
    single_inserts: int = 2_000
    scale_rows: int = 1_000_000
    aging_jobs: int = 400_000
    archive_rows: int = 10_000_000
    soak_jobs: int = 10_000_000
    fast: bool = False
    schema: str = "queuer_bench"


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    detail: str = ""


@dataclass
class Report:
    settings: dict[str, Any]
    database: str
    figures: list[Figure] = field(default_factory=list)

    def add(self, name: str, value: float, unit: str, detail: str = "", out: TextIO | None = None) -> None:
        figure = Figure(name, round(value, 3), unit, detail)
        self.figures.append(figure)
        if out is not None:
            print(f"  {name:<46} {value:>11,.2f} {unit:<7} {detail}", file=out, flush=True)


class Harness:
    """The server, the settings and the output of one run, with what the measurements share."""

    def __init__(self, config: DatabaseConfiguration, settings: BenchSettings, out: TextIO) -> None:
        self.base = config
        self.settings = settings
        self.out = out
        # The statements for the bench's own schema, where it has only a raw connection.
        self.queries = Queries(settings.schema)

    def fresh_config(self) -> DatabaseConfiguration:
        config = self.base.with_schema(self.settings.schema)
        with psycopg.connect(**config.connect_kwargs(), autocommit=True) as conn:
            conn.execute(self.queries.bench_drop_schema)
        return config

    def queuer(self, config: DatabaseConfiguration, concurrency: int | None = None) -> Queuer:
        """A queuer exactly as a new user makes one: no options (settings from QUEUER_* if any are set)."""
        q = new_queuer_with_db("bench", concurrency or self.settings.concurrency, None, config)
        q.add_task(noop)
        q.add_task(sleep_for)
        q.add_task(started_at)
        return q

    def start_worker(self, config: DatabaseConfiguration) -> subprocess.Popen[bytes]:
        """A default worker in a process of its own on ``config``'s schema; it prints a line once it takes jobs."""
        env = {**os.environ, **env_for(config)}
        command = [sys.executable, "-m", WORKER_MODULE, "--worker", str(self.settings.concurrency)]
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE)

    def archived_since(self, q: Queuer, since: Any) -> int:
        # Only rows archived during the run, by the ended_at index: counting a
        # whole archive of a million rows would slow down what it measures.
        row = q.db.execute_one(q.db.queries.bench_archived_since, {"since": since})
        return int(row["n"]) if row else 0

    def db_now(self, q: Queuer) -> Any:
        row = q.db.execute_one(q.db.queries.bench_now)
        assert row is not None
        return row["now"]

    def seconds_to_last_end(self, q: Queuer, since: Any) -> float:
        """From ``since`` (the server's clock) to the last end archived after it: no polling in the figure."""
        row = q.db.execute_one(q.db.queries.bench_seconds_to_last_end, {"since": since})
        assert row is not None and row["seconds"] is not None
        return float(row["seconds"])

    def wait_archived(self, q: Queuer, since: Any, target: int, timeout: float = 900.0,
                      procs: Sequence[subprocess.Popen[bytes]] = (), interval: float = 0.02) -> None:
        deadline = time.monotonic() + timeout
        while self.archived_since(q, since) < target:
            if procs and all(p.poll() is not None for p in procs):
                raise RuntimeError(f"every worker process exited early (codes {[p.returncode for p in procs]})")
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {self.archived_since(q, since)} of {target} jobs archived after {timeout:.0f}s")
            time.sleep(interval)

    def wait_ended(self, q: Queuer, target: int, timeout: float = 3600.0) -> None:
        """Wait until this process's worker has written ``target`` outcomes.

        Read from the worker's own count, not the archive: a count over the
        archive costs the server more as it grows, and much more while a
        snapshot held open keeps vacuum from marking its pages all-visible.
        """
        runtime = q._runtime
        assert runtime is not None, "start the queuer first"
        deadline = time.monotonic() + timeout
        while runtime.completer.applied_total < target:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {runtime.completer.applied_total} of {target} jobs ended after {timeout:.0f}s")
            time.sleep(0.01)

    @staticmethod
    def partitions_since(conn: Any, queries: Queries, days: int) -> None:
        """Archive partitions back to ``days`` ago, for archived jobs made up with past end times."""
        conn.execute(queries.bench_partitions_since, {"days": days})

    def fill(self, q: Queuer, n: int, task: str = "noop", **kwargs: Any) -> None:
        for start in range(0, n, 20_000):
            q.add_jobs([BatchJob(task=task, parameters_keyed=kwargs) for _ in range(min(20_000, n - start))])

    def release_held(self, q: Queuer, task: str) -> float:
        """Give the jobs filled as "held" to ``task`` at once and wake the workers; the time they could start."""
        with q.db.connection() as conn:
            conn.execute(q.db.queries.bench_release_held, {"task": task})
            started = time.perf_counter()  # committed: from now on a worker can claim them
            conn.execute(q.db.queries.bench_notify,
                         {"channel": q.db.channel, "payload": json.dumps({"j": [["insert", None, task]]})})
        return started


def one(cursor: Any) -> dict[str, Any]:
    """The one row a statement returns (it always returns one)."""
    row = cursor.fetchone()
    assert row is not None
    return dict(row)


def env_for(config: DatabaseConfiguration) -> dict[str, str]:
    env = {"QUEUER_DB_SCHEMA": config.schema}
    for key, value in (("HOST", config.host), ("PORT", config.port), ("DATABASE", config.database),
                       ("USERNAME", config.username), ("PASSWORD", config.password)):
        if value is not None:
            env["QUEUER_DB_" + key] = str(value)
    return env
