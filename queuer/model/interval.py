"""The interval schedule of a delayed or recurring job (queuerPy's ``Schedule``); cron schedules are in ``model.cron``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any


@dataclass
class Schedule:
    """Run a job at ``start``, then ``max_count - 1`` more times.

    ``max_count=0`` repeats forever. Repeats are spaced by ``interval`` or by the
    time returned from the next-interval function named ``next_interval``.
    """

    start: datetime | None = None
    max_count: int = 1
    interval: timedelta | None = None
    next_interval: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.max_count, bool) or not isinstance(self.max_count, int) or self.max_count < 0:
            raise ValueError(f"Schedule.max_count must be an integer >= 0 (0 = forever), not {self.max_count!r}")
        if self.start is not None and not isinstance(self.start, datetime):
            raise ValueError(f"Schedule.start must be a datetime, not {type(self.start).__name__}")
        if self.start is not None and self.start.tzinfo is None:
            # A naive datetime is taken as local time, as datetime.astimezone does.
            self.start = self.start.astimezone()
        if self.interval is not None:
            if not isinstance(self.interval, timedelta):
                raise ValueError(f"Schedule.interval must be a timedelta, not {type(self.interval).__name__}")
            if self.interval <= timedelta(0):
                raise ValueError("Schedule.interval must be positive")
        if self.next_interval is not None and (not isinstance(self.next_interval, str) or not self.next_interval):
            raise ValueError("Schedule.next_interval must be the name of a registered next-interval function")
        if self.interval is not None and self.next_interval is not None:
            raise ValueError("Schedule takes either interval or next_interval, not both")
        if self.max_count != 1 and self.interval is None and self.next_interval is None:
            raise ValueError(
                "Schedule with max_count 0 (forever) or greater than 1 needs interval or next_interval"
            )

    @property
    def repeats(self) -> bool:
        return self.max_count != 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat() if self.start else None,
            "max_count": self.max_count,
            "interval": self.interval.total_seconds() if self.interval else None,
            "next_interval": self.next_interval,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Schedule:
        start = data.get("start")
        interval = data.get("interval")
        return cls(
            start=datetime.fromisoformat(start) if start else None,
            max_count=int(data.get("max_count", 1)),
            interval=timedelta(seconds=interval) if interval else None,
            next_interval=data.get("next_interval"),
        )

