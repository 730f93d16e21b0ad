"""Per-job and per-worker options: error handling, priority, scheduling, dedupe."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from queuer.model.interval import Schedule


class RetryBackoff(str, Enum):
    """How the delay grows between retries of a failed attempt."""

    NONE = "none"
    LINEAR = "linear"
    EXPONENTIAL = "exponential"


@dataclass
class OnError:
    """What happens when an attempt fails or runs too long.

    ``timeout`` is seconds per attempt (``None`` or ``0`` for no limit);
    ``max_retries`` is how many more attempts follow a failed one, so a job runs
    at most ``1 + max_retries`` times. ``retry_jitter`` lengthens each retry
    delay by up to this fraction, at random, so that jobs that failed together
    do not all retry at the same moment (0 turns it off).
    """

    timeout: float | None = 30.0
    max_retries: int = 3
    retry_delay: float = 1.0
    retry_backoff: RetryBackoff | str = RetryBackoff.NONE
    retry_jitter: float = 0.1

    def __post_init__(self) -> None:
        try:
            self.retry_backoff = RetryBackoff(self.retry_backoff)
        except ValueError:
            choices = ", ".join(b.value for b in RetryBackoff)
            raise ValueError(
                f"unknown retry_backoff {self.retry_backoff!r}: use one of {choices}"
            ) from None
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ValueError(f"max_retries must be an integer >= 0, not {self.max_retries!r}")
        if not isinstance(self.retry_delay, (int, float)) or self.retry_delay < 0:
            raise ValueError(f"retry_delay must be a number of seconds >= 0, not {self.retry_delay!r}")
        if isinstance(self.retry_jitter, bool) or not isinstance(self.retry_jitter, (int, float)) or not (
                0 <= self.retry_jitter <= 1):
            raise ValueError(f"retry_jitter must be a fraction from 0 to 1, not {self.retry_jitter!r}")
        if self.timeout is not None and (not isinstance(self.timeout, (int, float)) or self.timeout < 0):
            raise ValueError(f"timeout must be a number of seconds >= 0 or None, not {self.timeout!r}")

    @property
    def max_attempts(self) -> int:
        """The most attempts a job runs: ``1 + max_retries``."""
        return 1 + self.max_retries

    @property
    def timeout_seconds(self) -> float | None:
        """Seconds per attempt, or None for no limit (``timeout`` None or 0)."""
        return self.timeout if self.timeout else None

    def retry_delay_after(self, attempt: int) -> float:
        """Seconds to wait before the attempt that follows failed attempt number ``attempt`` (1-based)."""
        if self.retry_backoff is RetryBackoff.LINEAR:
            delay = self.retry_delay * attempt
        elif self.retry_backoff is RetryBackoff.EXPONENTIAL:
            delay = self.retry_delay * (2 ** (attempt - 1))
        else:
            delay = self.retry_delay
        return delay * (1 + self.retry_jitter * random.random())

    def to_dict(self) -> dict[str, Any]:
        return {
            "timeout": self.timeout,
            "max_retries": self.max_retries,
            "retry_delay": self.retry_delay,
            "retry_backoff": RetryBackoff(self.retry_backoff).value,
            "retry_jitter": self.retry_jitter,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OnError:
        return cls(
            timeout=data.get("timeout"),
            max_retries=int(data.get("max_retries", 0)),
            retry_delay=float(data.get("retry_delay", 0.0)),
            retry_backoff=data.get("retry_backoff", RetryBackoff.NONE.value),
            retry_jitter=float(data.get("retry_jitter", 0.1)),
        )


@dataclass
class Options:
    """Options for one job. Anything left unset falls back to the worker's defaults."""

    on_error: OnError | None = None
    """Retries and timeout (None: the worker's default ``OnError``)."""
    schedule: Schedule | None = None
    """When to run, and how often to repeat (an interval ``Schedule``)."""
    priority: int = 0
    """Jobs with a higher priority are claimed first (a 32-bit integer)."""
    unique_key: str | None = None
    """At most one queued or running job holds this key; see ``on_duplicate``."""
    on_duplicate: str = "error"
    """When a job with the same ``unique_key`` is queued or running: "error" raises ``DuplicateJobError``, "skip" adds
    nothing and returns the existing job, "replace" gives a still-queued job these arguments and options and moves
    its start to ``execute_after`` from now (debounce: a burst of adds runs once, with the last arguments; while the
    job runs, "replace" acts as "skip").
    """
    unique_for: timedelta | None = None
    """With ``unique_key``: jobs with the key that ended this recently count as duplicates too (one report per
    five minutes, however often it is asked for)."""
    serial_key: str | None = None
    """Jobs with the same ``serial_key`` run one at a time, across all workers."""
    group_key: str | None = None
    """The group (a tenant, a customer) of the job: a task registered with ``group_concurrency_limit`` or
    ``group_requests_per_second`` limits each group, and claims its jobs round-robin between groups."""
    execute_after: datetime | timedelta | None = None
    """Not before this time (a datetime) or this long after adding (a timedelta, on the database clock)."""
    crash_budget: int | None = None
    """How many crashes of its worker while it runs a job may cost before it ends FAILED (None: the worker's
    ``WorkerSettings.crash_budget``, 5 by default).
    """
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.priority, bool) or not isinstance(self.priority, int):
            raise ValueError(f"priority must be an integer, not {self.priority!r}")
        if not -(2**31) <= self.priority < 2**31:
            raise ValueError(f"priority {self.priority} is out of range for a 32-bit integer")
        if self.unique_key is not None and (not isinstance(self.unique_key, str) or not self.unique_key):
            raise ValueError("unique_key must be a non-empty string or None")
        if self.serial_key is not None and (not isinstance(self.serial_key, str) or not self.serial_key):
            raise ValueError("serial_key must be a non-empty string or None")
        if self.group_key is not None and (not isinstance(self.group_key, str) or not self.group_key):
            raise ValueError("group_key must be a non-empty string or None")
        for name in ("unique_key", "serial_key", "group_key"):
            _check_text(getattr(self, name), name)
            if len(getattr(self, name) or "") > MAX_KEY_LENGTH:
                # A serial key travels in NOTIFY payloads, which PostgreSQL caps at 8000 bytes.
                raise ValueError(f"{name} is longer than {MAX_KEY_LENGTH} characters; use a hash of it")
        if self.crash_budget is not None and (
            isinstance(self.crash_budget, bool) or not isinstance(self.crash_budget, int) or self.crash_budget < 1
        ):
            raise ValueError(f"crash_budget must be a positive integer or None, not {self.crash_budget!r}")
        if self.execute_after is not None:
            if isinstance(self.execute_after, timedelta):
                if self.execute_after < timedelta(0):
                    raise ValueError("execute_after must not be a negative timedelta")
            elif isinstance(self.execute_after, datetime):
                if self.execute_after.tzinfo is None:
                    self.execute_after = self.execute_after.astimezone()  # naive = local time
            else:
                raise ValueError(
                    f"execute_after must be a datetime or a timedelta, not {type(self.execute_after).__name__}"
                )
            if self.schedule is not None and self.schedule.start is not None:
                raise ValueError("give either execute_after or schedule.start, not both")
        if self.on_duplicate not in ("error", "skip", "replace"):
            raise ValueError(f"on_duplicate must be 'error', 'skip' or 'replace', not {self.on_duplicate!r}")
        if self.unique_for is not None:
            if not isinstance(self.unique_for, timedelta) or not timedelta(0) < self.unique_for <= timedelta(days=3650):
                raise ValueError(f"unique_for must be a timedelta of up to 10 years, not {self.unique_for!r}")
            if self.unique_key is None:
                raise ValueError("unique_for needs a unique_key: it says how long the key stays taken after a job ends")

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.on_error is not None:
            data["on_error"] = self.on_error.to_dict()
        if self.schedule is not None:
            data["schedule"] = self.schedule.to_dict()
        if self.extra:
            data["extra"] = self.extra
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, priority: int = 0, unique_key: str | None = None) -> Options:
        data = data or {}
        on_error = data.get("on_error")
        schedule = data.get("schedule")
        return cls(
            on_error=OnError.from_dict(on_error) if on_error else None,
            schedule=Schedule.from_dict(schedule) if schedule else None,
            priority=priority,
            unique_key=unique_key,
            extra=dict(data.get("extra") or {}),
        )


__all__ = ["OnError", "Options", "RetryBackoff", "Schedule"]


MAX_KEY_LENGTH = 500


def _check_text(value: str | None, name: str) -> None:
    """PostgreSQL text holds neither NUL nor lone surrogates: say so before the driver does."""
    if value is None:
        return
    if "\x00" in value:
        raise ValueError(f"{name} contains a NUL character (\\x00), which PostgreSQL cannot store")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{name} contains a lone surrogate, which is not valid Unicode text") from None
