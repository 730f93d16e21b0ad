"""What the overview shows: jobs per task and status (and which tasks are paused), the last hour minute by
minute, the workers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from queuer.model.control import TaskControl

STATUS_ORDER = ("QUEUED", "SCHEDULED", "RUNNING", "WAITING", "SUCCEEDED", "FAILED", "CANCELLED")


@dataclass
class TaskCounts:
    task: str
    counts: dict[str, int] = field(default_factory=dict)

    def get(self, status: str) -> int:
        return self.counts.get(status, 0)


@dataclass
class Minute:
    minute: datetime
    succeeded: int
    failed: int
    cancelled: int
    depth: int

    @property
    def ended(self) -> int:
        return self.succeeded + self.failed + self.cancelled


@dataclass
class Overview:
    now: datetime
    tasks: list[TaskCounts]
    minutes: list[Minute]
    workers: list[dict[str, Any]]
    archive_estimate: int | None
    archive_exact: bool = False  # a count of a small archive, not the planner's estimate
    tasks_truncated: bool = False
    controls: dict[str, TaskControl] = field(default_factory=dict)
    """The tasks operators paused or gave other limits at runtime, by name."""

    def paused(self, task: str) -> bool:
        control = self.controls.get(task)
        return control is not None and control.paused

    def total(self, status: str) -> int:
        return sum(t.get(status) for t in self.tasks)


def minute_series(start: datetime, groups: list[dict[str, Any]]) -> list[Minute]:
    """Sixty minutes from ``start``: jobs ended in each by outcome, and the queue depth at each one's end.

    ``groups`` are the rows of the web_minute_groups statement."""
    minutes = [Minute(start + timedelta(minutes=i), 0, 0, 0, 0) for i in range(60)]
    change = [0] * 61
    for g in groups:
        n = g["n"]
        if g["status"] is not None and 0 <= g["ended_in"] < 60:
            field_name = g["status"].lower()
            setattr(minutes[g["ended_in"]], field_name, getattr(minutes[g["ended_in"]], field_name) + n)
        if g["due_in"] is not None:
            change[min(max(g["due_in"], 0), 60)] += n
            if g["left_in"] is not None:
                change[min(max(g["left_in"], 0), 60)] -= n
    depth = 0
    for minute, delta in zip(minutes, change):
        depth += delta
        minute.depth = max(depth, 0)
    return minutes
