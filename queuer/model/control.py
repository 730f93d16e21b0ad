"""How an operator steers a task at runtime, on every worker."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class TaskControl:
    """A task's stored controls: paused or not, and limits that replace the ones in the code."""

    task_name: str
    paused: bool = False
    """No new job of the task starts on any worker; running ones finish."""
    limits_set: bool = False
    """True while ``concurrency_limit`` and ``requests_per_second`` replace the task's own limits."""
    concurrency_limit: int | None = None
    requests_per_second: float | None = None
    updated_at: datetime | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> TaskControl:
        return cls(row["task_name"], row["paused"], row["limits_set"], row["concurrency_limit"],
                   row["requests_per_second"], row["updated_at"])
