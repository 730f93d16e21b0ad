"""CPU-bound jobs: one worker process against one per core (``queuer run --processes``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from queuer.model.batch_job import BatchJob
from queuer.tools.bench.harness import Harness, Report, env_for
from queuer.tools.bench.tasks import spin

JOB_SECONDS = 0.002
JOBS = 4_000


# Each count of processes runs this often, alternating; the best run of each counts, as
# timeit's does: the machine's other work only ever slows a run down.
RUNS = 2


def cpu(bench: Harness, report: Report) -> None:
    rounds = _rounds_for(JOB_SECONDS)
    cores = os.cpu_count() or 1
    ones: list[float] = []
    manys: list[float] = []
    for _ in range(RUNS):
        ones.append(_rate(bench, 1, rounds))
        manys.append(_rate(bench, cores, rounds))
    one, many = max(ones), max(manys)
    report.add("CPU-bound jobs, 1 worker process", one, "jobs/s",
               f"{JOBS:,} jobs of ~{JOB_SECONDS * 1000:.0f} ms of pure Python, 4 threads; best of "
               + ", ".join(f"{r:,.0f}" for r in ones), out=bench.out)
    report.add(f"CPU-bound jobs, {cores} worker processes", many, "jobs/s",
               f"queuer run --processes {cores}; best of " + ", ".join(f"{r:,.0f}" for r in manys), out=bench.out)
    report.add(f"CPU scaling, {cores} processes over 1", many / one, "x", f"bar: {0.9 * cores:.1f}x (0.9 per core)",
               out=bench.out)


def _rounds_for(seconds: float) -> int:
    """Loop turns of ``spin`` that take about ``seconds`` on this machine."""
    rounds = 10_000
    started = time.perf_counter()
    spin(rounds)
    return max(1, int(rounds * seconds / (time.perf_counter() - started)))


def _rate(bench: Harness, processes: int, rounds: int) -> float:
    config = bench.fresh_config()
    with bench.queuer(config) as q:
        q.add_jobs([BatchJob(task="held", parameters=[rounds]) for _ in range(JOBS)])
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "queuer", "run", "queuer.tools.bench.tasks:cpu_worker",
             "--processes", str(processes), "--log-level", "WARNING"],
            env={**os.environ, **env_for(config)})
        try:
            deadline = time.monotonic() + 120
            while len(q.get_workers(status="RUNNING")) < processes:  # every process takes jobs before the clock
                if time.monotonic() > deadline or supervisor.poll() is not None:
                    raise RuntimeError(f"the {processes} worker processes did not start")
                time.sleep(0.05)
            since = bench.db_now(q)
            bench.release_held(q, "spin")
            # Seldom asked, and timed by the server's clock: the cores are what is measured.
            bench.wait_archived(q, since, JOBS, interval=0.5)
            return JOBS / bench.seconds_to_last_end(q, since)
        finally:
            supervisor.send_signal(signal.SIGTERM)
            supervisor.wait(60)
