"""Factories for the `queuer run` tests (imported by the CLI in a subprocess)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from queuer import Queuer, WorkerSettings, current_job, new_queuer

FAST = WorkerSettings(poll_interval=0.5, heartbeat_interval=0.25, dead_after=2.0, master_lease=1.0)


def _queuer() -> Queuer:
    q = new_queuer("run-test", 4, settings=FAST, resources={"greeting": "hello"})

    def greet(name: str) -> str:
        return f"{current_job().resources['greeting']}, {name}"  # a shared resource from the factory

    def slow(seconds: float) -> float:
        logging.getLogger("tests.factories").warning("sleeping %s s", seconds)  # carries rid and task
        time.sleep(seconds)
        return seconds

    def whoami(seconds: float = 0.0) -> int:
        time.sleep(seconds)
        return os.getpid()

    q.add_task(greet)
    q.add_task(slow)
    q.add_task(whoami)
    return q


def plain() -> Queuer:
    return _queuer()


@contextmanager
def managed() -> Iterator[Queuer]:
    q = _queuer()
    try:
        yield q
    finally:
        marker = os.environ.get("QUEUER_TEST_CLEANUP_MARKER")
        if marker:
            open(marker, "w").write("cleaned up")


def fails_once() -> Queuer:
    marker = os.environ["QUEUER_TEST_FAIL_MARKER"]
    if not os.path.exists(marker):
        open(marker, "w").write("failed once")
        raise RuntimeError("the factory fails the first time")
    return _queuer()
