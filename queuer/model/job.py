"""A job as stored in ``job`` (active) or ``job_archive`` (ended)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any
from uuid import UUID

from queuer.model.options import Options
from queuer.payload.serialization import Undecodable


class JobStatus(str, Enum):
    """Where a job is: QUEUED, SCHEDULED, RUNNING or WAITING while active; SUCCEEDED, FAILED or CANCELLED once ended.

    An ended job has moved to the archive. Each member is also its name as a string (``JobStatus.QUEUED == "QUEUED"``).
    """

    QUEUED = "QUEUED"
    SCHEDULED = "SCHEDULED"
    """Waiting for its ``scheduled_at``."""
    RUNNING = "RUNNING"
    WAITING = "WAITING"
    """A workflow job waiting for the jobs it depends on to end."""
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def ended(self) -> bool:
        """True for SUCCEEDED, FAILED and CANCELLED."""
        return self in ENDED_STATUSES

    @classmethod
    def parse(cls, value: JobStatus | str) -> JobStatus:
        """Accept a JobStatus or its name in any case; a clear ValueError otherwise."""
        if isinstance(value, JobStatus):
            return value
        try:
            return cls(str(value).upper())
        except ValueError:
            choices = ", ".join(s.value for s in cls)
            raise ValueError(f"unknown job status {value!r}: use one of {choices}") from None


ACTIVE_STATUSES = (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.RUNNING, JobStatus.WAITING)
ENDED_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


@dataclass
class Job:
    """A job: one call of a task, with its arguments, options and status.

    Active jobs (queued, scheduled, running) are read from the ``job`` table, ended ones from
    ``job_archive``. ``add_job`` and the ``get_job*`` methods return them; ``rid`` identifies a job
    everywhere, and ``id`` is the number queuerPy's pages of ``get_jobs`` go by.
    """

    rid: UUID
    task_name: str
    status: JobStatus
    parameters: list[Any] = field(default_factory=list)
    parameters_keyed: dict[str, Any] = field(default_factory=dict)
    options: Options | None = None
    priority: int = 0
    attempts: int = 0
    max_attempts: int = 1
    failures: int = 0
    """Attempts that raised or timed out (spent from ``OnError.max_retries``)."""
    rescues: int = 0
    """Times the job went back to the queue because its worker died or stopped holding it."""
    crashes: int = 0
    """Rescues charged to the job (it provably was running), bounded by its crash budget."""
    snoozes: int = 0
    """Times the task put the job back for later with ``raise queuer.Snooze(seconds)`` (no retry spent)."""
    scheduled_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    worker_rid: UUID | None = None
    schedule_count: int = 0
    result: Any = None
    """What the task returned (SUCCEEDED jobs); see ``results`` for queuerPy's list form."""
    error: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    origin_rid: UUID | None = None
    """The job this one came from: the first run of its recurring series, or the archived job it was re-added from."""
    encrypted: bool = False
    """True when the payload is encrypted and no configured key could open it."""
    undecodable: str | None = None
    """Why stored arguments or a result could not be decoded (written by SQL or another producer); they read as empty
    then, and such a job fails with ``InvalidJobError`` when it is run.
    """
    workflow_id: str | None = None
    """The workflow this job belongs to, if any."""
    depends_on: list[UUID] = field(default_factory=list)
    """The rids of the jobs this one waits for (a workflow job), in the order they were given."""
    id: int | None = None

    @property
    def results(self) -> list[Any]:
        """queuerPy's form of the outcome: ``[value]`` when the job succeeded, else ``[]``."""
        return [self.result] if self.status is JobStatus.SUCCEEDED and not self.encrypted else []

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Job:
        parameters, parameters_keyed, result = row.get("parameters"), row.get("parameters_keyed"), row.get("results")
        undecodable = [v.reason for v in (parameters, parameters_keyed, result) if isinstance(v, Undecodable)]
        return cls(
            id=row.get("id"),
            rid=row["rid"],
            task_name=row["task_name"],
            status=JobStatus(row["status"]),
            parameters=list(parameters) if isinstance(parameters, list) else [],
            parameters_keyed=dict(parameters_keyed) if isinstance(parameters_keyed, dict) else {},
            options=_options_of(row),
            priority=row.get("priority", 0),
            attempts=row.get("attempts", 0),
            max_attempts=row.get("max_attempts", 1),
            failures=row.get("failures", 0),
            rescues=row.get("rescues", 0),
            crashes=row.get("crashes", 0),
            snoozes=row.get("snoozes", 0),
            scheduled_at=row.get("scheduled_at"),
            started_at=row.get("started_at"),
            ended_at=row.get("ended_at"),
            worker_rid=row.get("worker_rid"),
            schedule_count=row.get("schedule_count", 0),
            result=None if isinstance(result, Undecodable) else result,
            error=row.get("error"),
            created_at=row.get("created_at"),
            updated_at=row.get("updated_at"),
            origin_rid=row.get("origin_rid"),
            workflow_id=row.get("workflow_id"),
            depends_on=list(row.get("depends_on") or ()),
            undecodable="; ".join(undecodable) or None,
        )


def _options_of(row: dict[str, Any]) -> Options | None:
    options = row.get("options")
    if options is None and not row.get("unique_key") and not row.get("priority"):
        return None
    try:
        return Options.from_dict(options, row.get("priority", 0), row.get("unique_key"))
    except (TypeError, ValueError, AttributeError):
        return None  # a row edited by hand: the job stays readable, its error says what failed
