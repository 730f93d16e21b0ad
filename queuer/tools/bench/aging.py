"""The long-running measurements, run only when asked for: what age and a long run do to a queue.

``aging``: a snapshot held open, a large archive beside the queue, retention
dropping a day of it while the queue drains. ``soak``: millions of jobs through
one worker, sampling its rate, its memory and the job table's size.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack

import psycopg

from queuer.client.queuer import Queuer
from queuer.config.database import DatabaseConfiguration
from queuer.model.batch_job import BatchJob
from queuer.tools.bench.harness import Harness, Report, one
from queuer.tools.bench.tasks import noop

SOAK_SAMPLE_SECONDS = 10.0
SOAK_BACKLOG = 100_000


def aging(bench: Harness, report: Report) -> None:
    """What a month in production does: a snapshot held open elsewhere the whole time, an archive
    of --archive-rows beside the queue, and retention dropping a day of it while the queue drains."""
    n, rows = bench.settings.aging_jobs, bench.settings.archive_rows
    quiet = _drain_of(bench, n)
    report.add(f"aging: quiet drain of {n:,}", quiet, "jobs/s", "empty archive", out=bench.out)
    held = _drain_of(bench, n, hold_snapshot=True)
    report.add(f"aging: drain of {n:,}, a snapshot held open", held, "jobs/s",
               f"{held / quiet:.2f}x the quiet drain (REPEATABLE READ in another session)", out=bench.out)
    config = bench.fresh_config()
    with bench.queuer(config) as q:
        began = time.perf_counter()
        days = _fill_archive(bench, q, rows)
        print(f"  (filled {rows:,} archived jobs over {days} days in {time.perf_counter() - began:.0f} s)",
              file=bench.out, flush=True)
    beside = _drain_of(bench, n, config=config)
    report.add(f"aging: drain of {n:,} beside {rows:,} archived", beside, "jobs/s",
               f"{beside / quiet:.2f}x the drain beside an empty archive", out=bench.out)
    dropped: dict[str, float] = {}
    during = _drain_of(bench, n, config=config, midway=lambda q: dropped.update(_drop_oldest_day(q)))
    report.add("aging: prune the oldest day (drop its partition)", dropped["ms"], "ms",
               f"{dropped['rows']:,.0f} archived jobs in {dropped['partitions']:.0f} partition(s), "
               "while the queue drained", out=bench.out)
    report.add(f"aging: drain of {n:,} during that prune", during, "jobs/s",
               f"{during / beside:.2f}x the drain beside the same archive without it", out=bench.out)


def _fill_archive(bench: Harness, q: Queuer, rows: int) -> int:
    """``rows`` archived jobs, a million a day back from now, in their daily partitions; returns the days."""
    queries = q.db.queries
    days = max(1, -(-rows // 1_000_000))
    with q.db.connection() as conn:
        bench.partitions_since(conn, queries, days)
        for day in range(days):
            count = min(1_000_000, rows - day * 1_000_000)
            conn.execute(queries.bench_aging_fill_archive, {
                "first": day * 1_000_000 + 1, "last": day * 1_000_000 + count, "days_ago": day + 1,
                "count": count})
        conn.execute(queries.bench_vacuum_job_archive)
    return days


def _drop_oldest_day(q: Queuer) -> dict[str, float]:
    """Retention as the master runs it: drop every partition older than the newest full days."""
    queries = q.db.queries
    with q.db.connection() as conn:
        oldest = one(conn.execute(queries.bench_oldest_partition))
        # The partition's rows, counted through the parent by its bounds (pruned to that partition).
        rows = one(conn.execute(queries.bench_archived_between,
                                {"lower": oldest["lower_bound"], "upper": oldest["upper_bound"]}))["n"]
        keep = one(conn.execute(queries.bench_seconds_since, {"at": oldest["upper_bound"]}))["s"]
        started = time.perf_counter()
        result = one(conn.execute(queries.bench_archive_prune, {"keep": keep}))
        elapsed = time.perf_counter() - started
    return {"ms": elapsed * 1000, "rows": float(rows), "partitions": float(result["dropped"])}


def _drain_of(bench: Harness, n: int, hold_snapshot: bool = False, config: DatabaseConfiguration | None = None,
              midway: Callable[[Queuer], None] | None = None) -> float:
    """Fill ``n`` noop jobs, start a default worker, time until all are archived. ``config``: a schema
    to reuse (its archive kept); ``midway(q)`` runs once half of them ended."""
    config = config or bench.fresh_config()
    with ExitStack() as stack:
        q = stack.enter_context(bench.queuer(config))
        bench.fill(q, n)
        if hold_snapshot:
            holder = stack.enter_context(psycopg.connect(**config.connect_kwargs()))
            holder.execute(q.db.queries.bench_repeatable_read)
            holder.execute(q.db.queries.bench_take_snapshot)  # the snapshot is taken: vacuum's horizon stops here
        started = time.perf_counter()
        q.start()
        if midway is not None:
            bench.wait_ended(q, n // 2)
            midway(q)
        bench.wait_ended(q, n)
        return n / (time.perf_counter() - started)


def soak(bench: Harness, report: Report) -> None:
    """--soak-jobs through one worker, a producer keeping a backlog of SOAK_BACKLOG: does anything
    grow or slow down? Throughput, the process's memory and the job table's size, sampled."""
    total = bench.settings.soak_jobs
    config = bench.fresh_config()
    with bench.queuer(config) as q:
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
                      file=bench.out, flush=True)
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
    report.add(f"soak: {total:,} jobs, rate in the first minute", first_rate, "jobs/s", out=bench.out)
    report.add("soak: rate in the last minute", last_rate, "jobs/s",
               f"{last_rate / first_rate:.2f}x the first minute", out=bench.out)
    report.add("soak: process memory (RSS), first sample -> last", samples[-1][2] / 2**20, "MiB",
               f"from {samples[0][2] / 2**20:.0f} MiB, peak {max(s[2] for s in samples) / 2**20:.0f} MiB",
               out=bench.out)
    report.add("soak: job table with its indexes, largest sample", max(s[3] for s in samples) / 2**20, "MiB",
               f"last {samples[-1][3] / 2**20:.0f} MiB, backlog kept at {SOAK_BACKLOG:,}", out=bench.out)


def _rss_bytes() -> int:
    """This process's resident memory now (Linux), 0 where it cannot be read."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
