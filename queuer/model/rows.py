"""The rows the database layer writes and the worker holds: a job to insert, a claimed attempt, an outcome."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any
from uuid import UUID

from queuer.payload.serialization import MAX_ERROR_CHARS, cap_error


@dataclass(slots=True)
class NewJob:
    """A job ready to insert: arguments already serialized to JSON text."""

    rid: UUID
    task_name: str
    parameters: str
    parameters_keyed: str
    options: str | None
    priority: int = 0
    scheduled_at: datetime | None = None
    delay_seconds: float = 0.0
    max_attempts: int = 1
    timeout_seconds: float | None = None
    unique_key: str | None = None
    origin_rid: UUID | None = None
    schedule_count: int = 0
    serial_key: str | None = None
    group_key: str | None = None
    arguments_enc: bytes | None = None  # encrypted {"p": parameters, "k": parameters_keyed}
    skip_duplicate: bool = False  # with a unique_key: return the existing job instead of failing
    replace_duplicate: bool = False  # with a unique_key: give a still-queued job these arguments instead
    unique_for_seconds: float | None = None  # with a unique_key: jobs that ended this recently count too
    crash_budget: int | None = None  # None: the claiming worker's default
    workflow_id: str | None = None
    depends_on: tuple[UUID, ...] = ()  # parents in the order given; WAITING until every one has ended
    dependents: list[UUID] | None = None  # jobs of the same insert that depend on this one
    on_dependency_failure: str = "cancel"  # or "run": what a parent that did not succeed does to this job


@dataclass(frozen=True)
class ClaimKey:
    """Where a job stands in claim order: highest priority first, then earliest due, then oldest."""

    priority: int
    scheduled_at: datetime
    id: int


@dataclass
class ClaimedJob:
    """One attempt this worker holds: (id, attempt) is its fencing identity."""

    id: int
    rid: UUID
    task_name: str
    parameters: list[Any]
    parameters_keyed: dict[str, Any]
    options: dict[str, Any] | None
    priority: int
    scheduled_at: datetime
    attempt: int
    max_attempts: int
    timeout_seconds: float | None
    schedule_count: int
    created_at: datetime
    origin_rid: UUID | None = None
    arguments_enc: bytes | None = None
    failures: int = 0  # earlier attempts that raised or timed out
    rescues: int = 0  # times put back after a crash: then its start is recorded before it runs
    workflow_id: str | None = None
    depends_on: list[UUID] | None = None
    steps: dict[str, Any] | None = None  # results of the job's steps from earlier attempts
    snoozes: int = 0  # times the task snoozed it
    group_key: str | None = None

    @property
    def claim_key(self) -> ClaimKey:
        return ClaimKey(self.priority, self.scheduled_at, self.id)

    @property
    def binding(self) -> UUID:
        """What the arguments' encryption is bound to: the first job of a series, or this one."""
        return self.origin_rid or self.rid


class OutcomeStatus(str, Enum):
    """How an attempt ended, as the worker writes it."""

    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    RETRY = "RETRY"  # failed, with a retry left: the job is scheduled again
    SNOOZE = "SNOOZE"  # the task asked to run again later: scheduled again, no retry spent
    CRASHED = "CRASHED"  # the process it ran in alone died: a crash charged to the job (never batched)

    # The string's own hash, in C: outcomes are counted by status on the hot path.
    __hash__ = str.__hash__


# Plain names for the hot path (reading an Enum member costs a descriptor call).
SUCCEEDED, FAILED, RETRY, SNOOZE = OutcomeStatus.SUCCEEDED, OutcomeStatus.FAILED, OutcomeStatus.RETRY, OutcomeStatus.SNOOZE
CRASHED = OutcomeStatus.CRASHED


@dataclass(frozen=True)
class Outcome:
    """How one attempt ended."""

    id: int
    attempt: int
    status: OutcomeStatus
    results: str | None = None  # JSON text
    error: str | None = None
    retry_delay: float = 0.0
    next_at: datetime | None = None  # a recurring job's next run, from its next-interval function
    results_enc: bytes | None = None
    completed_in_tx: bool = False  # the task completed its job in its own transaction: this one may find it gone

    def __post_init__(self) -> None:
        if self.error is not None and len(self.error) > MAX_ERROR_CHARS:
            # a 2 MB exception message must not become a 2 MB row
            object.__setattr__(self, "error", cap_error(self.error))
