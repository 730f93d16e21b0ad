"""Exceptions raised by queuer's public API. Each message says what to do next."""

from __future__ import annotations

from uuid import UUID

from queuer.database.connection import DatabaseUnreachableError
from queuer.helper.config import ConfigurationError


class QueuerError(Exception):
    """Base class of queuer's own errors."""


class TaskNotRegisteredError(QueuerError, LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"task {name!r} is not registered with this queuer: register it with "
            "q.add_task(fn), q.add_task_with_name(fn, name) or @queuer.task first"
        )
        self.task_name = name


class DuplicateTaskError(QueuerError, ValueError):
    pass


class JobNotFoundError(QueuerError, LookupError):
    def __init__(self, rid: UUID) -> None:
        super().__init__(f"no job with rid {rid} in job or job_archive")
        self.rid = rid


class JobAlreadyEndedError(QueuerError):
    def __init__(self, rid: UUID, status: str) -> None:
        super().__init__(f"job {rid} already ended as {status}; nothing to cancel")
        self.rid = rid
        self.status = status


class JobWaitTimeoutError(QueuerError, TimeoutError):
    def __init__(self, rid: UUID, timeout: float, status: str | None) -> None:
        state = f"it is still {status}" if status else "it was not found"
        super().__init__(
            f"job {rid} did not finish within {timeout:g} s ({state}); wait longer, "
            "check that a worker with its task is running (q.get_jobs / `queuer workers`)"
        )
        self.rid = rid
        self.status = status


class DuplicateJobError(QueuerError):
    def __init__(self, unique_key: str) -> None:
        super().__init__(
            f"a job with unique_key {unique_key!r} is already queued or running; "
            "pass on_duplicate='skip' to ignore duplicates"
        )
        self.unique_key = unique_key


class QueuerStoppedError(QueuerError, RuntimeError):
    pass


__all__ = [
    "ConfigurationError",
    "DatabaseUnreachableError",
    "DuplicateJobError",
    "DuplicateTaskError",
    "JobAlreadyEndedError",
    "JobNotFoundError",
    "JobWaitTimeoutError",
    "QueuerError",
    "QueuerStoppedError",
    "TaskNotRegisteredError",
]
