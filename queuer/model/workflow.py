"""What a workflow is made of, as its builder hands it out and ``get_workflow`` reads it."""

from __future__ import annotations

from dataclasses import dataclass, field
from uuid import UUID

from queuer.model.job import Job, JobStatus


@dataclass(frozen=True)
class WorkflowJob:
    """A job added to a workflow: its ``rid`` is known before anything is written."""

    rid: UUID
    task_name: str
    workflow_id: str
    depends_on: tuple[UUID, ...] = ()
    """The rids of the jobs it waits for, in the order given."""


@dataclass
class WorkflowInfo:
    """A workflow as the database holds it: every job of it, active or ended."""

    id: str
    jobs: list[Job] = field(default_factory=list)

    @property
    def status(self) -> JobStatus:
        """RUNNING while any job is active; once all ended, SUCCEEDED when all succeeded, else FAILED or CANCELLED."""
        statuses = {job.status for job in self.jobs}
        if statuses & {JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.RUNNING, JobStatus.WAITING}:
            return JobStatus.RUNNING
        if JobStatus.FAILED in statuses:
            return JobStatus.FAILED
        if JobStatus.CANCELLED in statuses:
            return JobStatus.CANCELLED
        return JobStatus.SUCCEEDED

    def counts(self) -> dict[JobStatus, int]:
        """How many jobs are in each status."""
        counted: dict[JobStatus, int] = {}
        for job in self.jobs:
            counted[job.status] = counted.get(job.status, 0) + 1
        return counted

    def job(self, rid: UUID) -> Job:
        """The job ``rid`` of this workflow; KeyError if it has none."""
        for job in self.jobs:
            if job.rid == rid:
                return job
        raise KeyError(f"workflow {self.id!r} has no job {rid}")
