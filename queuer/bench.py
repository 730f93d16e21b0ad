"""``queuer bench``: throughput and latency figures of this machine.

Every measurement runs in a fresh schema (``queuer_bench`` by default) of the
database from ``QUEUER_DB_*``, or of a throwaway PostgreSQL when none is set.
Prints a table and writes the figures as JSON.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, TextIO

import psycopg

from queuer.helper.config import DatabaseConfiguration, quote_identifier
from queuer.model.batch_job import BatchJob
from queuer.factory import new_queuer_with_db
from queuer.queuer import Queuer
from queuer.settings import WorkerSettings


def noop() -> None:
    return None


@dataclass
class BenchSettings:
    jobs: int = 100_000
    concurrency: int = 10
    prefetch: int = 100
    processes: int = 4
    latency_samples: int = 300
    single_inserts: int = 3_000
    scale_rows: int = 1_000_000
    schema: str = "queuer_bench"

    def worker_settings(self) -> WorkerSettings:
        return WorkerSettings(prefetch=self.prefetch)


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
            print(f"  {name:<44} {value:>12,.1f} {unit:<7} {detail}", file=out, flush=True)


class Bench:
    def __init__(self, config: DatabaseConfiguration, settings: BenchSettings, out: TextIO) -> None:
        self.base = config
        self.settings = settings
        self.out = out

    # -- helpers -----------------------------------------------------------------

    def fresh_config(self) -> DatabaseConfiguration:
        config = self.base.with_schema(self.settings.schema)
        with psycopg.connect(**config.connect_kwargs(), autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {quote_identifier(config.schema)} CASCADE")  # type: ignore[arg-type]
        return config

    def queuer(self, config: DatabaseConfiguration) -> Queuer:
        q = new_queuer_with_db("bench", self.settings.concurrency, None, config, settings=self.settings.worker_settings())
        q.add_task(noop)
        return q

    def archived_since(self, q: Queuer, since: Any) -> int:
        # Only rows archived during the run, by the ended_at index: counting a
        # whole archive of a million rows would slow down what it measures.
        row = q.db.execute_one(
            f"SELECT count(*) AS n FROM {q.db.queries.schema_quoted}.job_archive WHERE ended_at >= %s", (since,)
        )
        return int(row["n"]) if row else 0

    def db_now(self, q: Queuer) -> Any:
        row = q.db.execute_one("SELECT now() AS now")
        assert row is not None
        return row["now"]

    def wait_archived(self, q: Queuer, since: Any, target: int, timeout: float = 600.0,
                      procs: list[subprocess.Popen[bytes]] = ()) -> None:  # type: ignore[assignment]
        deadline = time.monotonic() + timeout
        while self.archived_since(q, since) < target:
            if procs and all(p.poll() is not None for p in procs):
                raise RuntimeError(f"every worker process exited early (codes {[p.returncode for p in procs]})")
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {self.archived_since(q, since)} of {target} jobs archived after {timeout:.0f}s")
            time.sleep(0.05)

    # -- measurements ----------------------------------------------------------------

    def enqueue(self, report: Report) -> None:
        s = self.settings
        with self.queuer(self.fresh_config()) as q:
            batch = [BatchJob(task=noop) for _ in range(10_000)]
            started = time.perf_counter()
            for _ in range(max(1, s.jobs // len(batch))):
                q.add_jobs(batch)
            elapsed = time.perf_counter() - started
            total = max(1, s.jobs // len(batch)) * len(batch)
            report.add("enqueue add_jobs (COPY, batches of 10k)", total / elapsed, "jobs/s", out=self.out)
            times = []
            for _ in range(s.single_inserts):
                t0 = time.perf_counter()
                q.add_job(noop)
                times.append(time.perf_counter() - t0)
            report.add("enqueue add_job (one at a time)", len(times) / sum(times), "jobs/s",
                       f"p50 {statistics.median(times) * 1000:.2f} ms", out=self.out)

    def drain(self, report: Report, name: str, prepare: Callable[[Queuer], None] | None = None) -> float:
        s = self.settings
        config = self.fresh_config()
        with self.queuer(config) as q:
            if prepare is not None:
                prepare(q)
            else:
                for start in range(0, s.jobs, 20_000):
                    q.add_jobs([BatchJob(task=noop) for _ in range(min(20_000, s.jobs - start))])
            since = self.db_now(q)
            started = time.perf_counter()
            q.start()
            self.wait_archived(q, since, s.jobs)
            rate = s.jobs / (time.perf_counter() - started)
        report.add(name, rate, "jobs/s", f"{s.jobs:,} noop jobs, 1 process, {s.concurrency} threads", out=self.out)
        return rate

    def drain_processes(self, report: Report) -> None:
        s = self.settings
        config = self.fresh_config()
        with self.queuer(config) as q:
            for start in range(0, s.jobs, 20_000):
                q.add_jobs([BatchJob(task=noop) for _ in range(min(20_000, s.jobs - start))])
            env = {**os.environ, **_env_for(config)}
            command = [sys.executable, "-m", "queuer.bench", "--worker",
                       str(s.concurrency), str(s.prefetch)]
            since = self.db_now(q)
            started = time.perf_counter()
            procs = [subprocess.Popen(command, env=env) for _ in range(s.processes)]
            try:
                self.wait_archived(q, since, s.jobs, procs=procs)
            finally:
                for proc in procs:
                    proc.terminate()
                for proc in procs:
                    proc.wait(60)
            rate = s.jobs / (time.perf_counter() - started)
        report.add(f"drain, {s.processes} worker processes", rate, "jobs/s",
                   f"{s.jobs:,} noop jobs, incl. process start", out=self.out)

    def latency(self, report: Report) -> None:
        s = self.settings
        started_at: dict[str, float] = {}
        done = threading.Event()

        def mark() -> None:
            import queuer

            started_at[str(queuer.current_job().rid)] = time.perf_counter()
            if len(started_at) >= s.latency_samples:
                done.set()

        with new_queuer_with_db("bench-latency", s.concurrency, None, self.fresh_config(),
                                settings=s.worker_settings()) as q:
            q.add_task_with_name(mark, "mark")
            q.start()
            sent: dict[str, float] = {}
            for _ in range(s.latency_samples):
                t0 = time.perf_counter()
                job = q.add_job("mark")
                sent[str(job.rid)] = t0
                time.sleep(0.01)  # an idle worker between jobs is the point of this figure
            done.wait(30)
        delays = sorted((started_at[rid] - t0) * 1000 for rid, t0 in sent.items() if rid in started_at)
        p50 = delays[len(delays) // 2]
        p99 = delays[min(len(delays) - 1, int(len(delays) * 0.99))]
        report.add("latency add_job -> task start, p50", p50, "ms", f"{len(delays)} samples, idle worker", out=self.out)
        report.add("latency add_job -> task start, p99", p99, "ms", out=self.out)

    def scale(self, report: Report, empty_rate: float) -> None:
        s = self.settings

        def fill(q: Queuer) -> None:
            schema = q.db.queries.schema_quoted
            with q.db.connection() as conn:
                conn.execute(  # type: ignore[call-overload]
                    f"INSERT INTO {schema}.job_archive (id, rid, task_name, status, scheduled_at, created_at, ended_at) "
                    "SELECT -g, gen_random_uuid(), 'noop', 'SUCCEEDED', now(), now(), now() - interval '1 day' "
                    "FROM generate_series(1, %s) AS g", (s.scale_rows,))
                conn.execute(  # type: ignore[call-overload]
                    f"INSERT INTO {schema}.job (rid, task_name) SELECT gen_random_uuid(), 'noop' "
                    "FROM generate_series(1, %s)", (s.scale_rows,))
                conn.execute(f"VACUUM ANALYZE {schema}.job")  # type: ignore[arg-type]
                conn.execute(f"VACUUM ANALYZE {schema}.job_archive")  # type: ignore[arg-type]

        s_jobs = s.jobs
        rate = s_jobs / self._timed_drain_of(fill, s_jobs)
        report.add(f"drain with {s.scale_rows:,} queued + {s.scale_rows:,} archived", rate, "jobs/s",
                   f"first {s_jobs:,} of the queue; {rate / empty_rate:.2f}x the empty-table rate", out=self.out)

    def _timed_drain_of(self, fill: Callable[[Queuer], None], archived_target: int) -> float:
        config = self.fresh_config()
        with self.queuer(config) as q:
            fill(q)
            since = self.db_now(q)
            started = time.perf_counter()
            q.start()
            self.wait_archived(q, since, archived_target)
            return time.perf_counter() - started

    def run(self, which: set[str]) -> Report:
        report = Report(asdict(self.settings), self.base.describe())
        print(f"queuer bench on {self.base.describe()}", file=self.out)
        if "enqueue" in which:
            self.enqueue(report)
        empty_rate = 0.0
        if "drain" in which or "scale" in which:
            empty_rate = self.drain(report, "drain, 1 worker process (empty table)")
        if "processes" in which:
            self.drain_processes(report)
        if "latency" in which:
            self.latency(report)
        if "scale" in which:
            self.scale(report, empty_rate)
        return report


def _env_for(config: DatabaseConfiguration) -> dict[str, str]:
    env = {"QUEUER_DB_SCHEMA": config.schema}
    for key, value in (("HOST", config.host), ("PORT", config.port), ("DATABASE", config.database),
                       ("USERNAME", config.username), ("PASSWORD", config.password)):
        if value is not None:
            env["QUEUER_DB_" + key] = str(value)
    return env


def run_bench(settings: BenchSettings, which: set[str], json_path: str | None, out: TextIO = sys.stdout) -> int:
    with ExitStack() as stack:
        if DatabaseConfiguration.is_configured():
            config = DatabaseConfiguration.from_env()
        else:
            from queuer.helper.postgres_server import TemporaryPostgres

            print("No QUEUER_DB_* set: starting a throwaway PostgreSQL ...", file=out, flush=True)
            config = stack.enter_context(TemporaryPostgres()).config
        report = Bench(config, settings, out).run(which)
    if json_path:
        with open(json_path, "w", encoding="utf-8") as f:
            json.dump(asdict(report), f, indent=2)
        print(f"figures written to {json_path}", file=out)
    return 0


def _worker_main(concurrency: int, prefetch: int) -> None:
    """A drain worker for ``drain_processes`` (run as ``python -m queuer.bench --worker``)."""
    q = new_queuer_with_db("bench-worker", concurrency, None, None, settings=WorkerSettings(prefetch=prefetch))
    q.add_task(noop)
    q.install_signal_handlers()
    q.start()
    q.wait_until_stopped()


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "--worker":
    _worker_main(int(sys.argv[2]), int(sys.argv[3]))
