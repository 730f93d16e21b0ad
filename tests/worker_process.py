"""A worker process for the multi-process tests.

Usage: worker_process.py [--concurrency N] [--sleep SECONDS] [--drain]
Registers ``noop`` (returns its argument), ``sleepy`` (sleeps, then returns
its argument), ``timed``, ``watched``, ``gather`` and ``five_steps`` (log their runs, see there). With --drain it
exits when no job is left; otherwise it runs until
SIGTERM/SIGINT. Prints READY <worker rid> once claiming.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from queuer import OnError, WorkerSettings, new_queuer


def noop(value: object = None) -> object:
    return value


def sleepy(value: object = None, seconds: float = 0.01) -> object:
    if os.environ.get("QUEUER_TEST_ANNOUNCE"):
        sys.stdout.write(f"STARTED {value}\n")  # one write: lines of two threads do not interleave
        sys.stdout.flush()
    time.sleep(seconds)
    return value


def timed(seconds: float = 0.05) -> dict:
    """Report when it ran (wall clock, comparable across processes on one host)."""
    start = time.time()
    time.sleep(seconds)
    return {"start": start, "end": time.time()}


def watched(tag: str = "", first_attempt_seconds: float = 60.0) -> str:
    """Log each run's start and end to QUEUER_TEST_RUN_LOG; the first attempt runs long (until
    cancelled), later ones briefly. A line: "<event> <rid> <attempt> <pid> <wall time>"."""
    import queuer

    job = queuer.current_job()
    _log_run("start", job)
    cancelled = job.wait_cancelled(first_attempt_seconds if job.attempt == 1 else 0.2)
    _log_run("cancelled" if cancelled else "end", job)
    return tag


def gather() -> int:
    """A fan-in: logs its run, returns how many of its dependencies succeeded."""
    import queuer

    job = queuer.current_job()
    _log_run("gather", job)
    return sum(parent.status.value == "SUCCEEDED" for parent in job.dependencies())


def five_steps() -> list:
    """Five steps, each logged when it runs; step 4 of the first attempt waits to be killed."""
    import queuer

    job = queuer.current_job()

    def step(i: int) -> int:
        _log_run(f"step{i}", job)
        if i == 4 and job.attempt == 1:
            time.sleep(120)
        return i * 10

    return [job.step(f"s{i}", step, i) for i in range(1, 6)]


def ledger(tag: str, die: str = "") -> str:
    """Insert a row and complete the job in one transaction; on the first attempt, die (SIGKILL) "before"
    or "after" that transaction commits, as ``die`` says."""
    import signal

    import psycopg

    import queuer
    from queuer import DatabaseConfiguration

    job = queuer.current_job()
    _log_run("ledger", job)
    config = DatabaseConfiguration.from_env()
    with psycopg.connect(**config.connect_kwargs()) as conn:
        with conn.transaction():
            conn.execute(f'INSERT INTO "{config.schema}".ledger (tag) VALUES (%s)', (tag,))
            job.complete_tx(conn, f"booked {tag}")
            if die == "before" and job.attempt == 1:
                os.kill(os.getpid(), signal.SIGKILL)
    if die == "after" and job.attempt == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return "not this one: the job was completed in its transaction"


def _log_run(event: str, job: object) -> None:
    path = os.environ["QUEUER_TEST_RUN_LOG"]
    line = f"{event} {job.rid} {job.attempt} {os.getpid()} {time.time():.3f}\n"  # type: ignore[attr-defined]
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())  # one write: lines of two processes do not interleave
    finally:
        os.close(fd)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--drain", action="store_true")
    parser.add_argument("--name", default=f"test-worker-{os.getpid()}")
    args = parser.parse_args()
    logging.basicConfig(level=os.environ.get("QUEUER_TEST_LOG_LEVEL", "WARNING"),
                        format="%(asctime)s %(process)d %(threadName)s %(name)s %(levelname)s %(message)s")
    prefetch = os.environ.get("QUEUER_PREFETCH")
    settings = WorkerSettings(
        poll_interval=0.5, heartbeat_interval=0.25, dead_after=2.0, master_lease=1.0, shutdown_timeout=20.0,
        prefetch=int(prefetch) if prefetch else None,
    )
    on_error = OnError(max_retries=5, retry_delay=0, timeout=None)
    q = new_queuer(args.name, args.concurrency, on_error, settings=settings)
    q.add_task(noop)
    q.add_task(sleepy)
    q.add_task(timed)
    q.add_task(watched)
    q.add_task(gather)
    q.add_task(five_steps)
    q.add_task(ledger)
    q.add_task_with_name(timed, "limited_to_2", concurrency_limit=2)
    q.add_task_with_name(timed, "serial", serialized=True)
    q.add_task_with_name(timed, "rated_20", requests_per_second=20)
    q.add_task_with_name(timed, "per_tenant", group_concurrency_limit=2)
    if os.environ.get("QUEUER_TEST_CRON"):
        q.schedule("every-second", "* * * * * *")(noop)
    q.install_signal_handlers()
    q.start()
    assert q.worker is not None
    print(f"READY {q.worker.rid}", flush=True)
    if args.drain:
        idle_since = None
        while not q.wait_until_stopped(0.2):
            if q.get_jobs(limit=1):
                idle_since = None
            elif idle_since is None:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > 1.0:
                q.stop()
    else:
        q.wait_until_stopped()
    q.stop()
    print("STOPPED", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
