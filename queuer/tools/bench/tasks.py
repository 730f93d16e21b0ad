"""The tasks the bench's jobs run, shared by the measuring process and its worker processes."""

from __future__ import annotations

import time
from typing import Any


def noop() -> None:
    return None


def sleep_for(seconds: float) -> None:
    time.sleep(seconds)


def started_at() -> float:
    """When this job started (wall clock: the bench compares it across processes of one host)."""
    return time.time()


def spin(rounds: int) -> int:
    """Pure-Python work of about ``rounds`` loop turns: it holds the GIL the whole time."""
    total = 0
    for i in range(rounds):
        total += i * i % 7
    return total


def cpu_worker() -> Any:
    """The factory of ``queuer bench --only cpu``'s ``queuer run --processes N``: spin on 4 threads."""
    from queuer.client.factory import new_queuer_with_db

    q = new_queuer_with_db("bench-cpu", 4, None, None)
    q.add_task(spin)
    return q
