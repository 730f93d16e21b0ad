"""``queuer bench``: what a user gets on this machine, with no tuning.

Every measurement runs with the default configuration (``new_queuer(name, n)``,
default WorkerSettings) in a fresh schema (``queuer_bench``) of the database
from ``QUEUER_DB_*``, or of a throwaway PostgreSQL when none is set: durable
(PostgreSQL's own defaults: fsync, synchronous commit, full page writes) unless
``--fast`` turns those off. The same work done in plain SQL (the ceiling) is
measured on the same server in the same run, and the drain is printed as a
fraction of it. Prints a table and writes the figures as JSON.
"""

from __future__ import annotations

import json
import os
import queue
import resource
import statistics
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any, TextIO

import psycopg

from queuer.client.factory import new_queuer_with_db
from queuer.client.queuer import Queuer
from queuer.config.database import DatabaseConfiguration
from queuer.database.statements import Queries
from queuer.model.batch_job import BatchJob

# The server settings of a durable PostgreSQL (its defaults), and of a fast one.
# The durable server: PostgreSQL's own defaults, over the throwaway server's fast ones (FAST_SETTINGS
# of postgres_server, which --fast keeps).
DURABLE_SETTINGS = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}

MEASUREMENTS = ("ceiling", "drain", "work", "latency", "processes", "enqueue", "scale", "web", "aging", "soak")
# Measurements that take long or need much disk: run only when asked for with --only.
ON_REQUEST = ("aging", "soak")
SOAK_SAMPLE_SECONDS = 10.0
SOAK_BACKLOG = 100_000
WEB_BAR_MS = 300.0  # a page of `queuer web` over a large archive renders within this


def noop() -> None:
    return None


def sleep_for(seconds: float) -> None:
    time.sleep(seconds)


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


class Bench:
    def __init__(self, config: DatabaseConfiguration, settings: BenchSettings, out: TextIO) -> None:
        self.base = config
        self.settings = settings
        self.out = out
        # The statements for the bench's own schema, where it has only a raw connection.
        self.queries = Queries(settings.schema)

    # -- helpers -----------------------------------------------------------------

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

    def archived_since(self, q: Queuer, since: Any) -> int:
        # Only rows archived during the run, by the ended_at index: counting a
        # whole archive of a million rows would slow down what it measures.
        row = q.db.execute_one(q.db.queries.bench_archived_since, {"since": since})
        return int(row["n"]) if row else 0

    def db_now(self, q: Queuer) -> Any:
        row = q.db.execute_one(q.db.queries.bench_now)
        assert row is not None
        return row["now"]

    def wait_archived(self, q: Queuer, since: Any, target: int, timeout: float = 900.0,
                      procs: list[subprocess.Popen[bytes]] = ()) -> None:  # type: ignore[assignment]
        deadline = time.monotonic() + timeout
        while self.archived_since(q, since) < target:
            if procs and all(p.poll() is not None for p in procs):
                raise RuntimeError(f"every worker process exited early (codes {[p.returncode for p in procs]})")
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {self.archived_since(q, since)} of {target} jobs archived after {timeout:.0f}s")
            time.sleep(0.02)

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

    # -- measurements ----------------------------------------------------------------

    def ceiling(self, report: Report) -> float:
        """The same work in plain SQL: claim 100 with SKIP LOCKED, move them to the archive; two connections."""
        s = self.settings
        config = self.fresh_config()
        with self.queuer(config) as q:
            self.fill(q, s.jobs)
        queries = self.queries
        with psycopg.connect(**config.connect_kwargs(), autocommit=True) as conn:
            conn.execute(queries.bench_vacuum_job)  # fresh statistics: the best plans
        claim, move = queries.bench_ceiling_claim, queries.bench_ceiling_move
        batches: queue.Queue[list[int] | None] = queue.Queue()
        kwargs = config.connect_kwargs()

        def claimer() -> None:
            with psycopg.connect(**kwargs, autocommit=True) as conn:
                while True:
                    ids = [r[0] for r in conn.execute(claim).fetchall()]
                    if not ids:
                        batches.put(None)
                        return
                    batches.put(ids)

        started = time.perf_counter()
        thread = threading.Thread(target=claimer)
        thread.start()
        with psycopg.connect(**kwargs, autocommit=True) as conn:
            while (ids := batches.get()) is not None:
                conn.execute(move, {"ids": ids})
        thread.join()
        rate = s.jobs / (time.perf_counter() - started)
        report.add("ceiling: the same work in plain SQL", rate, "jobs/s",
                   f"{s.jobs:,} jobs; claim 100 + archive move, 2 connections", out=self.out)
        return rate

    def drain(self, report: Report, ceiling: float | None) -> float:
        s = self.settings
        config = self.fresh_config()
        with self.queuer(config) as q:
            self.fill(q, s.jobs)
            cpu0 = resource.getrusage(resource.RUSAGE_SELF)
            started = time.perf_counter()
            q.start()
            self.wait_ended(q, s.jobs)
            elapsed = time.perf_counter() - started
            cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        rate = s.jobs / elapsed
        detail = f"{s.jobs:,} noop jobs, 1 process, new_queuer(name, {s.concurrency})"
        if ceiling:
            detail += f"; {rate / ceiling:.2f}x the ceiling"
        report.add("drain, default configuration", rate, "jobs/s", detail, out=self.out)
        cpu = (cpu1.ru_utime - cpu0.ru_utime + cpu1.ru_stime - cpu0.ru_stime) / s.jobs * 1e6
        report.add("worker CPU per noop job", cpu, "us", "user + system time of the process / jobs", out=self.out)
        if ceiling:
            report.add("drain / ceiling", rate / ceiling, "x", out=self.out)
        return rate

    def work(self, report: Report) -> None:
        """Jobs that wait on I/O (sleep): the queue's overhead should vanish beside them."""
        for jobs, seconds, concurrency in ((20_000, 0.010, 50), (2_000, 0.100, 200)):
            config = self.fresh_config()
            with self.queuer(config, concurrency) as q:
                self.fill(q, jobs, "held", seconds=seconds)  # a task no worker has: nothing starts yet
                q.start()  # the clock starts with the worker up, as a long-running service is
                since = self.db_now(q)
                started = self.release_held(q, "sleep_for")
                self.wait_archived(q, since, jobs)
                rate = jobs / (time.perf_counter() - started)
            ideal = concurrency / seconds
            report.add(f"real work: {seconds * 1000:.0f} ms jobs at max_concurrency {concurrency}",
                       rate / ideal * 100, "%", f"{rate:,.0f} jobs/s of the ideal {ideal:,.0f}", out=self.out)

    def latency(self, report: Report, drain_rate: float) -> None:
        s = self.settings
        for label, background in (("idle worker", 0.0), ("50% load", drain_rate / 2)):
            delays = self._latency(s.latency_samples, background)
            p50 = delays[len(delays) // 2]
            p99 = delays[min(len(delays) - 1, int(len(delays) * 0.99))]
            detail = f"{len(delays)} samples, worker in its own process" + (
                f", {background:,.0f} noop jobs/s beside them" if background else "")
            report.add(f"latency add_job -> start, {label}, p50", p50, "ms", detail, out=self.out)
            report.add(f"latency add_job -> start, {label}, p99", p99, "ms", out=self.out)

    def _latency(self, samples: int, background_rate: float) -> list[float]:
        """add_job in this process -> task start in a worker process (as a web app and a worker are)."""
        stop = threading.Event()
        config = self.fresh_config()
        with self.queuer(config) as q:
            env = {**os.environ, **_env_for(config)}
            command = [sys.executable, "-m", "queuer.tools.bench", "--worker", str(self.settings.concurrency)]
            worker = subprocess.Popen(command, env=env, stdout=subprocess.PIPE)
            try:
                assert worker.stdout is not None
                worker.stdout.readline()  # READY

                def load() -> None:  # a steady stream of noop jobs, in small batches
                    batch = max(1, int(background_rate / 100))
                    interval = batch / background_rate
                    next_at = time.perf_counter()
                    while not stop.is_set():
                        q.add_jobs([BatchJob(task=noop) for _ in range(batch)])
                        next_at += interval
                        time.sleep(max(0.0, next_at - time.perf_counter()))

                loader = threading.Thread(target=load, daemon=True)
                if background_rate:
                    loader.start()
                    time.sleep(1.0)  # let the load settle
                sent: list[tuple[Any, float]] = []
                for _ in range(samples):
                    t0 = time.time()
                    sent.append((q.add_job("started_at").rid, t0))
                    time.sleep(0.01)
                stop.set()
                if background_rate:
                    loader.join(10)
                delays = [(q.wait_for_job_finished(rid, 60).result - t0) * 1000 for rid, t0 in sent]
            finally:
                worker.terminate()
                worker.wait(60)
        return sorted(delays)

    def processes(self, report: Report) -> None:
        s = self.settings
        rates = []
        for n in s.processes:
            config = self.fresh_config()
            with self.queuer(config) as q:
                self.fill(q, s.jobs, "held")  # a task no worker has: nothing starts before the clock
                env = {**os.environ, **_env_for(config)}
                command = [sys.executable, "-m", "queuer.tools.bench", "--worker", str(s.concurrency)]
                procs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE) for _ in range(n)]
                try:
                    for proc in procs:  # wait until each is ready: the curve is about draining, not starting
                        assert proc.stdout is not None
                        proc.stdout.readline()
                    since = self.db_now(q)
                    started = self.release_held(q, "noop")
                    self.wait_archived(q, since, s.jobs, procs=procs)
                    rate = s.jobs / (time.perf_counter() - started)
                finally:
                    for proc in procs:
                        proc.terminate()
                    for proc in procs:
                        proc.wait(60)
            rates.append(rate)
            report.add(f"drain, {n} worker process{'es' if n > 1 else ''}", rate, "jobs/s",
                       f"{s.jobs:,} noop jobs, {s.concurrency} threads each", out=self.out)

    def enqueue(self, report: Report) -> None:
        s = self.settings
        with self.queuer(self.fresh_config()) as q:
            batch = [BatchJob(task=noop) for _ in range(10_000)]
            rounds = max(1, 100_000 // len(batch))
            started = time.perf_counter()
            for _ in range(rounds):
                q.add_jobs(batch)
            elapsed = time.perf_counter() - started
            report.add("enqueue add_jobs (COPY, batches of 10k)", rounds * len(batch) / elapsed, "jobs/s",
                       out=self.out)
            times = []
            for _ in range(s.single_inserts):
                t0 = time.perf_counter()
                q.add_job(noop)
                times.append(time.perf_counter() - t0)
            report.add("enqueue add_job (one at a time)", len(times) / sum(times), "jobs/s",
                       f"p50 {statistics.median(times) * 1000:.2f} ms (one durable commit each)", out=self.out)

    def scale(self, report: Report, empty_rate: float) -> None:
        s = self.settings

        def fill(q: Queuer) -> None:
            queries = q.db.queries
            with q.db.connection() as conn:
                self.partitions_since(conn, queries, days=2)
                conn.execute(queries.bench_scale_fill_archive, {"rows": s.scale_rows})
                conn.execute(queries.bench_scale_fill_job, {"rows": s.scale_rows})
                conn.execute(queries.bench_vacuum_job)
                conn.execute(queries.bench_vacuum_job_archive)

        config = self.fresh_config()
        with self.queuer(config) as q:
            fill(q)
            started = time.perf_counter()
            q.start()
            self.wait_ended(q, s.jobs)
            rate = s.jobs / (time.perf_counter() - started)
        report.add(f"drain with {s.scale_rows:,} queued + {s.scale_rows:,} archived", rate, "jobs/s",
                   f"first {s.jobs:,} of the queue; {rate / empty_rate:.2f}x the empty-table rate", out=self.out)

    def aging(self, report: Report) -> None:
        """What a month in production does: a snapshot held open elsewhere the whole time, an archive
        of --archive-rows beside the queue, and retention dropping a day of it while the queue drains."""
        n, rows = self.settings.aging_jobs, self.settings.archive_rows
        quiet = self._drain_of(n)
        report.add(f"aging: quiet drain of {n:,}", quiet, "jobs/s", "empty archive", out=self.out)
        held = self._drain_of(n, hold_snapshot=True)
        report.add(f"aging: drain of {n:,}, a snapshot held open", held, "jobs/s",
                   f"{held / quiet:.2f}x the quiet drain (REPEATABLE READ in another session)", out=self.out)
        config = self.fresh_config()
        with self.queuer(config) as q:
            began = time.perf_counter()
            days = self._fill_archive(q, rows)
            print(f"  (filled {rows:,} archived jobs over {days} days in {time.perf_counter() - began:.0f} s)",
                  file=self.out, flush=True)
        beside = self._drain_of(n, config=config)
        report.add(f"aging: drain of {n:,} beside {rows:,} archived", beside, "jobs/s",
                   f"{beside / quiet:.2f}x the drain beside an empty archive", out=self.out)
        dropped: dict[str, float] = {}
        during = self._drain_of(n, config=config, midway=lambda q: dropped.update(self._drop_oldest_day(q)))
        report.add("aging: prune the oldest day (drop its partition)", dropped["ms"], "ms",
                   f"{dropped['rows']:,.0f} archived jobs in {dropped['partitions']:.0f} partition(s), "
                   "while the queue drained", out=self.out)
        report.add(f"aging: drain of {n:,} during that prune", during, "jobs/s",
                   f"{during / beside:.2f}x the drain beside the same archive without it", out=self.out)

    def _fill_archive(self, q: Queuer, rows: int) -> int:
        """``rows`` archived jobs, a million a day back from now, in their daily partitions; returns the days."""
        queries = q.db.queries
        days = max(1, -(-rows // 1_000_000))
        with q.db.connection() as conn:
            self.partitions_since(conn, queries, days)
            for day in range(days):
                count = min(1_000_000, rows - day * 1_000_000)
                conn.execute(queries.bench_aging_fill_archive, {
                    "first": day * 1_000_000 + 1, "last": day * 1_000_000 + count, "days_ago": day + 1,
                    "count": count})
            conn.execute(queries.bench_vacuum_job_archive)
        return days

    def _drop_oldest_day(self, q: Queuer) -> dict[str, float]:
        """Retention as the master runs it: drop every partition older than the newest full days."""
        queries = q.db.queries
        with q.db.connection() as conn:
            oldest = _one(conn.execute(queries.bench_oldest_partition))
            # The partition's rows, counted through the parent by its bounds (pruned to that partition).
            rows = _one(conn.execute(queries.bench_archived_between,
                                     {"lower": oldest["lower_bound"], "upper": oldest["upper_bound"]}))["n"]
            keep = _one(conn.execute(queries.bench_seconds_since, {"at": oldest["upper_bound"]}))["s"]
            started = time.perf_counter()
            result = _one(conn.execute(queries.bench_archive_prune, {"keep": keep}))
            elapsed = time.perf_counter() - started
        return {"ms": elapsed * 1000, "rows": float(rows), "partitions": float(result["dropped"])}

    def _drain_of(self, n: int, hold_snapshot: bool = False, config: DatabaseConfiguration | None = None,
                  midway: Any = None) -> float:
        """Fill ``n`` noop jobs, start a default worker, time until all are archived. ``config``: a schema
        to reuse (its archive kept); ``midway(q)`` runs once half of them ended."""
        config = config or self.fresh_config()
        with ExitStack() as stack:
            q = stack.enter_context(self.queuer(config))
            self.fill(q, n)
            if hold_snapshot:
                holder = stack.enter_context(psycopg.connect(**config.connect_kwargs()))
                holder.execute(q.db.queries.bench_repeatable_read)
                holder.execute(q.db.queries.bench_take_snapshot)  # the snapshot is taken: vacuum's horizon stops here
            started = time.perf_counter()
            q.start()
            if midway is not None:
                self.wait_ended(q, n // 2)
                midway(q)
            self.wait_ended(q, n)
            return n / (time.perf_counter() - started)

    def soak(self, report: Report) -> None:
        """--soak-jobs through one worker, a producer keeping a backlog of SOAK_BACKLOG: does anything
        grow or slow down? Throughput, the process's memory and the job table's size, sampled."""
        total = self.settings.soak_jobs
        config = self.fresh_config()
        with self.queuer(config) as q:
            stop = threading.Event()
            added = [0]

            def ended() -> int:
                runtime = q._runtime
                return runtime.completer.applied_total if runtime is not None else 0

            def produce() -> None:
                batch = [BatchJob(task=noop) for _ in range(10_000)]
                while added[0] < total and not stop.is_set():
                    if added[0] - ended() >= SOAK_BACKLOG:
                        time.sleep(0.02)
                        continue
                    q.add_jobs(batch[: total - added[0]])
                    added[0] += min(len(batch), total - added[0])

            q.start()
            producer = threading.Thread(target=produce, name="soak-producer", daemon=True)
            started = time.perf_counter()
            producer.start()
            samples: list[tuple[float, int, int, int]] = []  # (seconds, ended, rss bytes, job table bytes)
            try:
                while not samples or samples[-1][1] < total:
                    time.sleep(SOAK_SAMPLE_SECONDS)
                    row = q.db.execute_one(q.db.queries.bench_job_table_size)
                    samples.append((time.perf_counter() - started, ended(), _rss_bytes(), int(row["size"]) if row else 0))
                    print(f"  ... {samples[-1][1]:>11,} ended after {samples[-1][0]:5.0f} s, RSS "
                          f"{samples[-1][2] / 2**20:.0f} MiB, job table {samples[-1][3] / 2**20:.0f} MiB",
                          file=self.out, flush=True)
            finally:
                stop.set()
                producer.join(60)
        per_minute = max(1, int(60 / SOAK_SAMPLE_SECONDS))
        first = samples[min(per_minute, len(samples)) - 1]
        first_rate = first[1] / first[0]
        # The last minute in full: the sample that saw the end covers only part of its interval.
        steady = [sample for sample in samples if sample[1] < total] or samples
        last_end = steady[-1]
        last_start = steady[max(0, len(steady) - 1 - per_minute)]
        last_rate = (last_end[1] - last_start[1]) / max(1e-9, last_end[0] - last_start[0])
        report.add(f"soak: {total:,} jobs, rate in the first minute", first_rate, "jobs/s", out=self.out)
        report.add("soak: rate in the last minute", last_rate, "jobs/s",
                   f"{last_rate / first_rate:.2f}x the first minute", out=self.out)
        report.add("soak: process memory (RSS), first sample -> last", samples[-1][2] / 2**20, "MiB",
                   f"from {samples[0][2] / 2**20:.0f} MiB, peak {max(s[2] for s in samples) / 2**20:.0f} MiB",
                   out=self.out)
        report.add("soak: job table with its indexes, largest sample", max(s[3] for s in samples) / 2**20, "MiB",
                   f"last {samples[-1][3] / 2**20:.0f} MiB, backlog kept at {SOAK_BACKLOG:,}", out=self.out)

    def web(self, report: Report) -> None:
        """`queuer web` over real HTTP with --scale-rows archived jobs (ended over the last day) and a live queue."""
        from queuer.web import MISSING_EXTRA, extra_installed

        if not extra_installed():
            print(f"  web: skipped ({MISSING_EXTRA})", file=self.out, flush=True)
            return
        import http.client
        from urllib.parse import urlencode

        from queuer.web.params import Cursor
        from queuer.web.server import WebServer, web_queuer

        s = self.settings
        tasks = ["resize_image", "send_email", "generate_report", "sync_inventory", "charge_card", "index_document",
                 "notify_slack", "export_csv"]
        config = self.fresh_config()
        with self.queuer(config) as q:
            queries = q.db.queries
            with q.db.connection() as conn:
                # A million a day, as a busy service ends them: a larger archive is more days of
                # history, not more jobs in the last hour (which is what the overview charts).
                days = max(1, -(-s.scale_rows // 1_000_000))
                self.partitions_since(conn, queries, days=days + 1)
                # One statement: 94 % succeeded, 5 % failed, 1 % cancelled, spread evenly over those days.
                conn.execute(queries.bench_web_fill_archive, {"tasks": tasks, "rows": s.scale_rows, "days": days})
                conn.execute(queries.bench_vacuum_job_archive)
            self.fill(q, 2_000, task="held")  # a queue no worker of this bench takes
            q.start()  # and a live worker on the overview
            with q.db.connection() as conn:
                row = _one(conn.execute(queries.bench_web_page_100_row))
                failed_rid = _one(conn.execute(queries.bench_web_failed_rid))["rid"]
            page_100 = Cursor(row["id"], row["ended_at"]).encode()
            pages = [
                ("overview", "/"),
                ("overview refresh (fragment)", "/fragments/overview"),
                ("jobs: newest ended", "/jobs?status=ended"),
                ("jobs: failed", "/jobs?status=failed"),
                ("jobs: one task, succeeded", "/jobs?status=succeeded&task=send_email"),
                ("jobs: 100th page (keyset cursor)", f"/jobs?status=ended&cursor={page_100}"),
                ("jobs: an hour a day ago", "/jobs?" + urlencode({
                    "status": "ended", "since": (row["ended_at"] - timedelta(hours=23)).isoformat(),
                    "until": (row["ended_at"] - timedelta(hours=22)).isoformat()})),
                ("jobs: rid search", f"/jobs?rid={str(row['rid'])[:8]}"),
                ("jobs: active queue", "/jobs"),
                ("job page (failed, archived)", f"/jobs/{failed_rid}"),
            ]
            web_q = web_queuer(config, None)
            server = WebServer(web_q).start()
            try:
                http_conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
                for name, url in pages:
                    times = []
                    for attempt in range(12):
                        t0 = time.perf_counter()
                        http_conn.request("GET", url)
                        response = http_conn.getresponse()
                        response.read()
                        elapsed = time.perf_counter() - t0
                        if response.status != 200:
                            raise RuntimeError(f"GET {url}: HTTP {response.status}")
                        if attempt >= 2:  # the first two warm the server's and PostgreSQL's caches
                            times.append(elapsed * 1000)
                    median, worst = statistics.median(times), max(times)
                    verdict = "ok" if median < WEB_BAR_MS else f"OVER the {WEB_BAR_MS:.0f} ms bar"
                    report.add(f"web {name}", median, "ms", f"median of {len(times)}, max {worst:.0f} ms; "
                               f"{s.scale_rows:,} archived; {verdict}", out=self.out)
                http_conn.close()
            finally:
                server.stop()
                web_q.stop()

    def run(self, which: set[str]) -> Report:
        report = Report(asdict(self.settings), self.base.describe())
        kind = "fast: fsync off" if self.settings.fast else "durable: fsync on, synchronous commit"
        print(f"queuer bench on {self.base.describe()} ({kind}); {os.cpu_count()} cores", file=self.out, flush=True)
        ceiling = self.ceiling(report) if "ceiling" in which else None
        drain_rate = 0.0
        if which & {"drain", "latency", "scale"}:
            drain_rate = self.drain(report, ceiling)
        if "work" in which:
            self.work(report)
        if "latency" in which:
            self.latency(report, drain_rate)
        if "processes" in which:
            self.processes(report)
        if "enqueue" in which:
            self.enqueue(report)
        if "scale" in which:
            self.scale(report, drain_rate)
        if "web" in which:
            self.web(report)
        if "aging" in which:
            self.aging(report)
        if "soak" in which:
            self.soak(report)
        return report


def _one(cursor: Any) -> dict[str, Any]:
    """The one row a statement returns (it always returns one)."""
    row = cursor.fetchone()
    assert row is not None
    return dict(row)


def _rss_bytes() -> int:
    """This process's resident memory now (Linux), 0 where it cannot be read."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


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
            from queuer.tools.postgres_server import TemporaryPostgres

            server_settings = {} if settings.fast else DURABLE_SETTINGS
            print(f"No QUEUER_DB_* set: starting a throwaway PostgreSQL ({'fast' if settings.fast else 'durable'}) ...",
                  file=out, flush=True)
            config = stack.enter_context(TemporaryPostgres(extra_settings=server_settings)).start()
        report = Bench(config, settings, out).run(which)
    if json_path:
        with open(json_path, "w", encoding="utf-8") as f:
            json.dump(asdict(report), f, indent=2)
        print(f"figures written to {json_path}", file=out)
    return 0


def started_at() -> float:
    """When this job started (wall clock: the bench compares it across processes of one host)."""
    return time.time()


def _worker_main(concurrency: int) -> None:
    """A worker for the process curve and latency (run as ``python -m queuer.tools.bench --worker N``)."""
    q = new_queuer_with_db("bench-worker", concurrency, None, None)
    q.add_task(noop)
    q.add_task(started_at)
    q.install_signal_handlers()
    q.start()
    print("READY", flush=True)
    q.wait_until_stopped()


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--worker":
    _worker_main(int(sys.argv[2]))
