"""The tasks the bench's jobs run, shared by the measuring process and its worker processes."""

from __future__ import annotations

import time


def noop() -> None:
    return None


def sleep_for(seconds: float) -> None:
    time.sleep(seconds)


def started_at() -> float:
    """When this job started (wall clock: the bench compares it across processes of one host)."""
    return time.time()
