"""What the page's buttons do, through the Queuer's own API (the same calls as the CLI's and a program's).

Each action returns what the page shows next, or raises ``ActionError`` with
the HTTP status and a message for the operator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from uuid import UUID

from queuer.client.queuer import Queuer
from queuer.errors import (
    DuplicateJobError,
    EncryptionError,
    JobAlreadyEndedError,
    JobNotFoundError,
    QueuerError,
    WorkerNotFoundError,
)
from queuer.model.control import TaskControl
from queuer.model.job import Job
from queuer.model.options import Options
from queuer.model.worker import Worker

SCHEDULE_ACTIONS = ("pause", "resume", "trigger")
TASK_ACTIONS = ("pause", "resume")


class ActionError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def cancel(q: Queuer, rid: UUID) -> Job:
    try:
        return q.cancel_job(rid)
    except JobNotFoundError:
        raise ActionError(404, f"no job {rid}") from None
    except JobAlreadyEndedError as exc:
        raise ActionError(409, f"job {rid} has already ended ({exc}); nothing was changed") from None


def cancel_workflow(q: Queuer, workflow_id: str, exists: Callable[[str], bool]) -> list[Job]:
    """Cancel every job of the workflow that has not ended; returns them (at least one)."""
    cancelled = q.cancel_workflow(workflow_id)
    if cancelled:
        return cancelled
    # Nothing was active: an unknown workflow, or one whose jobs have all ended.
    if not exists(workflow_id):
        raise ActionError(404, f"no workflow {workflow_id!r}: no job, active or archived, belongs to it")
    raise ActionError(409, f"every job of workflow {workflow_id!r} has already ended; nothing was changed")


def requeue(q: Queuer, rid: UUID) -> Job:
    """Add an ended job again, as a new job with the same task, arguments and options."""
    try:
        return q.readd_job_from_archive(rid)
    except JobNotFoundError:
        if q.job_db.status_of(rid) is not None:
            raise ActionError(409, f"job {rid} has not ended: only ended jobs can be queued again") from None
        raise ActionError(404, f"no job {rid}") from None
    except EncryptionError:
        raise ActionError(409, f"job {rid} is encrypted and this server does not hold its key "
                               "(set QUEUER_ENCRYPTION_KEY): it cannot be queued again from here") from None
    except DuplicateJobError as exc:
        raise ActionError(409, f"a job with the same unique key is already queued or running ({exc})") from None
    except ValueError as exc:  # e.g. stored arguments that cannot be decoded: re-adding would lose them
        raise ActionError(409, str(exc)) from None


def stop_worker(q: Queuer, rid: UUID) -> Worker:
    """Ask a worker to finish its running jobs and stop (its row shows STOPPING at once)."""
    try:
        return q.stop_worker_gracefully(rid)
    except WorkerNotFoundError:
        raise ActionError(404, f"no worker {rid}") from None


def schedule(q: Queuer, name: str, action: str) -> Job | None:
    """Pause, resume or trigger a cron schedule; trigger adds its job now and returns it."""
    if action == "pause":
        _known(q.pause_schedule, name)
        return None
    if action == "resume":
        _known(q.resume_schedule, name)
        return None
    found = next((s for s in q.get_schedules() if s.name == name), None)
    if found is None:
        raise ActionError(404, f"no schedule named {name!r}")
    # The job records where it came from; the schedule's own next tick is unchanged.
    options = Options(extra={"schedule": name, "triggered": "web"})
    try:
        return q.add_job_with_options(options, found.task_name, *found.parameters, **found.parameters_keyed)
    except (QueuerError, ValueError, TypeError) as exc:
        raise ActionError(409, f"schedule {name!r} could not add its job: {exc}") from None


def _known(call: object, name: str) -> None:
    try:
        call(name)  # type: ignore[operator]
    except LookupError:
        raise ActionError(404, f"no schedule named {name!r}") from None


def task(q: Queuer, name: str, action: str) -> TaskControl:
    """Pause or resume a task on every worker (kept in the database: it holds until changed again).

    Pause stops every worker from starting its jobs, within a second; running ones finish. Either is
    allowed whatever the task's state (pausing a paused task changes nothing), and for a task that has
    no job yet."""
    try:
        return q.pause_task(name) if action == "pause" else q.resume_task(name)
    except ValueError as exc:  # a name the Queuer refuses (the form's was checked already)
        raise ActionError(400, str(exc)) from None


@dataclass
class BulkResult:
    done: list[UUID] = field(default_factory=list)
    skipped: list[tuple[UUID, str]] = field(default_factory=list)  # (rid, why): ended meanwhile, encrypted...


def bulk(q: Queuer, action: str, rids: list[UUID]) -> BulkResult:
    """Cancel or re-queue each job; one that changed state meanwhile is skipped, with the reason."""
    result = BulkResult()
    for rid in rids:
        try:
            if action == "cancel":
                cancel(q, rid)
            else:
                requeue(q, rid)
            result.done.append(rid)
        except ActionError as exc:
            result.skipped.append((rid, exc.message))
    return result
