"""A cron schedule as stored in the ``schedule`` table."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class CronSchedule:
    name: str
    cron: str
    timezone: str
    task_name: str
    parameters: list[Any] = field(default_factory=list)
    parameters_keyed: dict[str, Any] = field(default_factory=dict)
    paused: bool = False
    next_run_at: datetime | None = None
    last_run_at: datetime | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> CronSchedule:
        return cls(
            name=row["name"],
            cron=row["cron"],
            timezone=row["timezone"],
            task_name=row["task_name"],
            parameters=list(row.get("parameters") or []),
            parameters_keyed=dict(row.get("parameters_keyed") or {}),
            paused=row["paused"],
            next_run_at=row.get("next_run_at"),
            last_run_at=row.get("last_run_at"),
        )
