"""A worker process with default settings, for the crash tests.

Usage: crash_worker.py [--concurrency N] [--also NAME ...]
No OnError and default WorkerSettings: what a new user gets. Every task
appends "<rid> <wall time> <pid>" to the file named by QUEUER_TEST_STARTS
when it starts (one write per line, so a SIGKILL loses nothing written), and
prints "STARTED <rid> <wall time> <pid>". Prints "READY <worker rid>" once
claiming. ``--also NAME`` registers ``work`` under NAME too (a task only this
worker runs).
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from queuer import current_job, new_queuer


def _started() -> None:
    line = f"{current_job().rid} {time.time():.6f} {os.getpid()}\n"
    path = os.environ.get("QUEUER_TEST_STARTS")
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
    sys.stdout.write("STARTED " + line)
    sys.stdout.flush()


def work(i: int, seconds: float = 0.05) -> int:
    _started()
    current_job().wait_cancelled(seconds)  # a sleep that a cancel ends early
    return i


def poison() -> None:
    _started()
    os.kill(os.getpid(), signal.SIGKILL)


def gil_hog(seconds: float) -> int:
    """Hold the GIL in one C call for about ``seconds``: no other thread of this process runs."""
    _started()
    # Summing ones keeps sum() on its fast path throughout. The processor speeds up over
    # a long call, so the estimate (after a warm-up) errs long rather than short.
    per_unit = float("inf")
    for _ in range(3):  # the fastest sample: the machine may be busy while it measures
        began = time.perf_counter()
        sum(itertools.repeat(1, 5 * 10**7))
        per_unit = min(per_unit, (time.perf_counter() - began) / (5 * 10**7))
    return sum(itertools.repeat(1, int(seconds / per_unit)))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--also", action="append", default=[])
    args = parser.parse_args()
    logging.basicConfig(level=os.environ.get("QUEUER_TEST_LOG_LEVEL", "WARNING"),
                        format="%(asctime)s %(process)d %(threadName)s %(name)s %(levelname)s %(message)s")
    q = new_queuer(f"crash-worker-{os.getpid()}", args.concurrency)
    for fn in (work, poison, gil_hog):
        q.add_task(fn)
    for name in args.also:
        q.add_task_with_name(work, name)
    q.install_signal_handlers()
    q.start()
    print(f"READY {q.worker.rid}", flush=True)
    q.wait_until_stopped()
    q.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
