"""Cron schedules: the stored schedule, its expression's validation and next tick (croniter), in a time zone."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter  # type: ignore[import-untyped]


def validate_cron(expression: str) -> str:
    """Five fields, or six with seconds last (croniter's form); ValueError otherwise."""
    if not isinstance(expression, str) or any(ord(ch) < 32 for ch in expression):
        raise ValueError(f"invalid cron expression {expression!r}")
    fields = expression.split()
    if len(fields) not in (5, 6) or not croniter.is_valid(expression):
        raise ValueError(
            f"invalid cron expression {expression!r}: use 5 fields (minute hour day month weekday), "
            "or 6 with seconds last, e.g. '*/5 * * * *' or '* * * * * */10'"
        )
    return expression


def validate_timezone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(f"unknown time zone {name!r}: use an IANA name such as 'UTC' or 'Europe/Berlin'") from None


def next_tick(expression: str, timezone: str, after: datetime) -> datetime:
    """The first tick strictly after ``after``, evaluated in ``timezone``."""
    local = after.astimezone(validate_timezone(timezone))
    next_at: datetime = croniter(expression, local).get_next(datetime)
    return next_at


@dataclass
class CronSchedule:
    """A cron schedule: at each tick of ``cron`` in ``timezone``, a job of ``task_name`` with these arguments.

    Stored in the database, so each tick fires once whichever workers run; a paused schedule adds no
    jobs. ``add_schedule``, ``get_schedules``, ``pause_schedule`` and ``resume_schedule`` return them.
    """

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
