"""Workflows: a fan-in over a fan-out beside a plain drain of the same jobs, and the links of a long chain."""

from __future__ import annotations

import subprocess
import time

from queuer.config.database import DatabaseConfiguration
from queuer.model.batch_job import BatchJob
from queuer.tools.bench.harness import Harness, Report

FAN_OUT = 10_000
CHAIN = 1_000
WORKER_PROCESSES = 3


def workflows(bench: Harness, report: Report) -> None:
    plain = _fan_in(bench, as_workflow=False)
    report.add(f"plain drain of {FAN_OUT:,} jobs", FAN_OUT / plain, "jobs/s",
               f"{WORKER_PROCESSES} worker processes, timed from add_jobs to the last end", out=bench.out)
    fanned = _fan_in(bench, as_workflow=True)
    report.add(f"workflow: {FAN_OUT:,} children and a fan-in", (FAN_OUT + 1) / fanned, "jobs/s",
               f"from building it to the fan-in's end; {fanned / plain:.2f}x the plain drain's time", out=bench.out)
    links, total = _chain(bench)
    p50, p99 = links[len(links) // 2], links[min(len(links) - 1, int(len(links) * 0.99))]
    report.add(f"workflow: chain of {CHAIN:,}, a link, p50", p50, "ms",
               "a job's end -> the next one's start (database clock), 1 worker process", out=bench.out)
    report.add(f"workflow: chain of {CHAIN:,}, a link, p99", p99, "ms", out=bench.out)
    report.add(f"workflow: chain of {CHAIN:,}, whole, per link", total * 1000 / CHAIN, "ms",
               "from commit to the last link's end, divided by the links", out=bench.out)


def _started(bench: Harness, config: DatabaseConfiguration, n: int) -> list[subprocess.Popen[bytes]]:
    procs = [bench.start_worker(config) for _ in range(n)]
    for proc in procs:  # each takes jobs before the clock starts
        assert proc.stdout is not None
        proc.stdout.readline()
    return procs


def _stopped(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(60)


def _fan_in(bench: Harness, as_workflow: bool) -> float:
    """Seconds from adding the jobs to the end of the last (the fan-in, in a workflow)."""
    config = bench.fresh_config()
    with bench.queuer(config) as q:
        procs = _started(bench, config, WORKER_PROCESSES)
        try:
            since = bench.db_now(q)
            started = time.perf_counter()
            if as_workflow:
                wf = q.workflow("bench-fan-in")
                children = wf.add_jobs([BatchJob(task="noop") for _ in range(FAN_OUT)])
                fan_in = wf.add_job("noop", depends_on=children)
                wf.commit()
                q.wait_for_job_finished(fan_in.rid, 900)
            else:
                q.add_jobs([BatchJob(task="noop") for _ in range(FAN_OUT)])
                bench.wait_archived(q, since, FAN_OUT, procs=procs)
            return time.perf_counter() - started
        finally:
            _stopped(procs)


def _chain(bench: Harness) -> tuple[list[float], float]:
    """Milliseconds from each link's end to the next link's start, sorted; and the seconds the whole chain took."""
    config = bench.fresh_config()
    with bench.queuer(config) as q:
        procs = _started(bench, config, 1)
        try:
            wf = q.workflow("bench-chain")
            link = wf.add_job("noop")
            rids = [link.rid]
            for _ in range(CHAIN - 1):
                link = wf.add_job("noop", depends_on=[link])
                rids.append(link.rid)
            committed = time.perf_counter()
            wf.commit()
            q.wait_for_job_finished(rids[-1], 900)
            total = time.perf_counter() - committed
            jobs = {job.rid: job for job in q.get_workflow("bench-chain").jobs}
        finally:
            _stopped(procs)
    gaps = []
    for before, after in zip(rids, rids[1:]):
        ended, started = jobs[before].ended_at, jobs[after].started_at
        assert ended is not None and started is not None
        gaps.append((started - ended).total_seconds() * 1000)
    return sorted(gaps), total
