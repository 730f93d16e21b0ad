"""``queuer demo``: a worker on a small workload, with a progress bar.

Uses the database from ``QUEUER_DB_*`` when set; otherwise starts a throwaway
PostgreSQL (local server binaries, or the ``embedded`` extra) and removes it after.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import time
from contextlib import ExitStack
from typing import TextIO

from queuer.client.factory import new_queuer_with_db
from queuer.config.database import DatabaseConfiguration
from queuer.config.settings import WorkerSettings
from queuer.model.batch_job import BatchJob
from queuer.model.job import JobStatus


def checksum(text: str) -> str:
    """A small CPU-bound task."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def fizzbuzz(n: int) -> str:
    return "FizzBuzz" if n % 15 == 0 else "Fizz" if n % 3 == 0 else "Buzz" if n % 5 == 0 else str(n)


def greet(name: str, punctuation: str = "!") -> str:
    return f"Hello, {name}{punctuation}"


def _bar(done: int, total: int, width: int = 30) -> str:
    filled = int(width * done / total) if total else width
    return "[" + "#" * filled + "-" * (width - filled) + f"] {done:>6}/{total}"


def run_demo(jobs: int = 10_000, concurrency: int = 8, out: TextIO = sys.stdout) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with ExitStack() as stack:
        if DatabaseConfiguration.is_configured():
            config = DatabaseConfiguration.from_env()
            print(f"Using PostgreSQL at {config.describe()}", file=out)
        else:
            from queuer.tools.postgres_server import TemporaryPostgres

            print("No QUEUER_DB_* set: starting a throwaway PostgreSQL ...", file=out, flush=True)
            server = stack.enter_context(TemporaryPostgres())
            config = server.start()
            print(f"Started {server.describe()}", file=out)
        q = new_queuer_with_db("demo", concurrency, None, config, settings=WorkerSettings())
        stack.callback(q.stop)
        for fn in (checksum, fizzbuzz, greet):
            q.add_task(fn)

        batch = []
        for i in range(jobs):
            kind = i % 3
            if kind == 0:
                batch.append(BatchJob(task=checksum, parameters=[f"item-{i}"]))
            elif kind == 1:
                batch.append(BatchJob(task=fizzbuzz, parameters=[i]))
            else:
                batch.append(BatchJob(task=greet, parameters=[f"job {i}"], parameters_keyed={"punctuation": "?"}))
        started = time.perf_counter()
        rids = q.add_jobs(batch)
        enqueue_s = time.perf_counter() - started
        print(f"Added {len(rids):,} jobs with COPY in {enqueue_s:.2f}s ({len(rids) / enqueue_s:,.0f} jobs/s)", file=out)

        started = time.perf_counter()
        q.start()
        done = 0
        while done < jobs:
            done = q.db.execute_one(q.db.queries.count_archived)["n"]  # type: ignore[index]
            print("\r" + _bar(done, jobs), end="", file=out, flush=True)
            if done < jobs:
                time.sleep(0.1)  # the progress bar's refresh rate
        elapsed = time.perf_counter() - started
        print(file=out)
        failed = len(q.get_jobs(status=JobStatus.FAILED, limit=10))
        print(f"Ran {jobs:,} jobs in {elapsed:.2f}s: {jobs / elapsed:,.0f} jobs/s "
              f"with {concurrency} threads ({failed} failed)", file=out)
        for rid in rids[:3]:
            job = q.get_job_ended(rid)
            print(f"  {job.task_name}{tuple(job.parameters)} -> {job.result!r}", file=out)
        return 0 if failed == 0 else 1
