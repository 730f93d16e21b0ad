"""How fast jobs go through: the SQL ceiling, drains, real work, latency, worker processes, enqueue, scale."""

from __future__ import annotations

import queue
import resource
import statistics
import threading
import time
from typing import Any

import psycopg

from queuer.client.queuer import Queuer
from queuer.model.batch_job import BatchJob
from queuer.tools.bench.harness import Harness, Report
from queuer.tools.bench.tasks import noop


def ceiling(bench: Harness, report: Report) -> float:
    """The same work in plain SQL: claim 100 with SKIP LOCKED, move them to the archive; two connections."""
    s = bench.settings
    config = bench.fresh_config()
    with bench.queuer(config) as q:
        bench.fill(q, s.jobs)
    queries = bench.queries
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
               f"{s.jobs:,} jobs; claim 100 + archive move, 2 connections", out=bench.out)
    return rate


def drain(bench: Harness, report: Report, ceiling: float | None) -> float:
    s = bench.settings
    config = bench.fresh_config()
    with bench.queuer(config) as q:
        bench.fill(q, s.jobs)
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        q.start()
        bench.wait_ended(q, s.jobs)
        elapsed = time.perf_counter() - started
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    rate = s.jobs / elapsed
    detail = f"{s.jobs:,} noop jobs, 1 process, new_queuer(name, {s.concurrency})"
    if ceiling:
        detail += f"; {rate / ceiling:.2f}x the ceiling"
    report.add("drain, default configuration", rate, "jobs/s", detail, out=bench.out)
    cpu = (cpu1.ru_utime - cpu0.ru_utime + cpu1.ru_stime - cpu0.ru_stime) / s.jobs * 1e6
    report.add("worker CPU per noop job", cpu, "us", "user + system time of the process / jobs", out=bench.out)
    if ceiling:
        report.add("drain / ceiling", rate / ceiling, "x", out=bench.out)
    return rate


def work(bench: Harness, report: Report) -> None:
    """Jobs that wait on I/O (sleep): the queue's overhead should vanish beside them."""
    for jobs, seconds, concurrency in ((20_000, 0.010, 50), (2_000, 0.100, 200)):
        config = bench.fresh_config()
        with bench.queuer(config, concurrency) as q:
            bench.fill(q, jobs, "held", seconds=seconds)  # a task no worker has: nothing starts yet
            q.start()  # the clock starts with the worker up, as a long-running service is
            since = bench.db_now(q)
            started = bench.release_held(q, "sleep_for")
            bench.wait_archived(q, since, jobs)
            rate = jobs / (time.perf_counter() - started)
        ideal = concurrency / seconds
        report.add(f"real work: {seconds * 1000:.0f} ms jobs at max_concurrency {concurrency}",
                   rate / ideal * 100, "%", f"{rate:,.0f} jobs/s of the ideal {ideal:,.0f}", out=bench.out)


def latency(bench: Harness, report: Report, drain_rate: float) -> None:
    s = bench.settings
    for label, background in (("idle worker", 0.0), ("50% load", drain_rate / 2)):
        delays = _latency(bench, s.latency_samples, background)
        p50 = delays[len(delays) // 2]
        p99 = delays[min(len(delays) - 1, int(len(delays) * 0.99))]
        detail = f"{len(delays)} samples, worker in its own process" + (
            f", {background:,.0f} noop jobs/s beside them" if background else "")
        report.add(f"latency add_job -> start, {label}, p50", p50, "ms", detail, out=bench.out)
        report.add(f"latency add_job -> start, {label}, p99", p99, "ms", out=bench.out)


def _latency(bench: Harness, samples: int, background_rate: float) -> list[float]:
    """add_job in this process -> task start in a worker process (as a web app and a worker are)."""
    stop = threading.Event()
    config = bench.fresh_config()
    with bench.queuer(config) as q:
        worker = bench.start_worker(config)
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


def processes(bench: Harness, report: Report) -> None:
    s = bench.settings
    for n in s.processes:
        config = bench.fresh_config()
        with bench.queuer(config) as q:
            bench.fill(q, s.jobs, "held")  # a task no worker has: nothing starts before the clock
            procs = [bench.start_worker(config) for _ in range(n)]
            try:
                for proc in procs:  # wait until each is ready: the curve is about draining, not starting
                    assert proc.stdout is not None
                    proc.stdout.readline()
                since = bench.db_now(q)
                started = bench.release_held(q, "noop")
                bench.wait_archived(q, since, s.jobs, procs=procs)
                rate = s.jobs / (time.perf_counter() - started)
            finally:
                for proc in procs:
                    proc.terminate()
                for proc in procs:
                    proc.wait(60)
        report.add(f"drain, {n} worker process{'es' if n > 1 else ''}", rate, "jobs/s",
                   f"{s.jobs:,} noop jobs, {s.concurrency} threads each", out=bench.out)


def enqueue(bench: Harness, report: Report) -> None:
    s = bench.settings
    with bench.queuer(bench.fresh_config()) as q:
        batch = [BatchJob(task=noop) for _ in range(10_000)]
        rounds = max(1, 100_000 // len(batch))
        started = time.perf_counter()
        for _ in range(rounds):
            q.add_jobs(batch)
        elapsed = time.perf_counter() - started
        report.add("enqueue add_jobs (COPY, batches of 10k)", rounds * len(batch) / elapsed, "jobs/s",
                   out=bench.out)
        times = []
        for _ in range(s.single_inserts):
            t0 = time.perf_counter()
            q.add_job(noop)
            times.append(time.perf_counter() - t0)
        report.add("enqueue add_job (one at a time)", len(times) / sum(times), "jobs/s",
                   f"p50 {statistics.median(times) * 1000:.2f} ms (one durable commit each)", out=bench.out)


def scale(bench: Harness, report: Report, empty_rate: float) -> None:
    s = bench.settings

    def fill(q: Queuer) -> None:
        queries = q.db.queries
        with q.db.connection() as conn:
            bench.partitions_since(conn, queries, days=2)
            conn.execute(queries.bench_scale_fill_archive, {"rows": s.scale_rows})
            conn.execute(queries.bench_scale_fill_job, {"rows": s.scale_rows})
            conn.execute(queries.bench_vacuum_job)
            conn.execute(queries.bench_vacuum_job_archive)

    config = bench.fresh_config()
    with bench.queuer(config) as q:
        fill(q)
        started = time.perf_counter()
        q.start()
        bench.wait_ended(q, s.jobs)
        rate = s.jobs / (time.perf_counter() - started)
    report.add(f"drain with {s.scale_rows:,} queued + {s.scale_rows:,} archived", rate, "jobs/s",
               f"first {s.jobs:,} of the queue; {rate / empty_rate:.2f}x the empty-table rate", out=bench.out)
