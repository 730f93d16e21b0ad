"""Exceptions raised by queuer. Each message says what to do next.

Every one is a ``QueuerError``, and also the built-in class a caller would
catch for that kind of failure (``LookupError``, ``ValueError``,
``RuntimeError``, ...), which includes what queuerPy raises in the same spot.
This module imports nothing of queuer's, so every layer can raise these.
"""

from __future__ import annotations

from uuid import UUID


class QueuerError(Exception):
    """Base class of queuer's own errors."""


class ConfigurationError(QueuerError, ValueError):
    """The configuration is invalid; the message says what to fix."""


class DatabaseUnreachableError(QueuerError, ConnectionError):
    """PostgreSQL could not be reached in time; the message names the server (never the password)."""


class ConnectionLostError(DatabaseUnreachableError):
    """The connection broke while a statement was running: it may or may not have taken effect."""


class JobOutcomeUnknownError(ConnectionLostError):
    """The connection broke while the job's insert was being committed: it may or may not exist."""

    def __init__(self, message: str, rid: UUID | None = None) -> None:
        super().__init__(message)
        self.rid = rid
        """The job's rid (a batch's first job), when known."""


class EncryptionError(QueuerError):
    """A payload could not be encrypted or opened (no key, wrong key, tampered data)."""


class TaskNotRegisteredError(QueuerError, LookupError):
    """A function given as a task (to ``add_job``, ``add_schedule``, ...) is not registered with this queuer.

    A task given by its name is not checked: a producer may add jobs that only other workers run.
    """

    def __init__(self, name: str) -> None:
        super().__init__(
            f"task {name!r} is not registered with this queuer: register it with "
            "q.add_task(fn), q.add_task_with_name(fn, name) or @queuer.task first"
        )
        self.task_name = name
        """The function's name."""


class DuplicateTaskError(QueuerError, RuntimeError, ValueError):
    """Another function is already registered under this name."""


class JobNotFoundError(QueuerError, LookupError):
    """No job has this rid, or none where the call looks.

    ``get_job_ended`` raises it for a job that has not ended, and ``readd_job_from_archive`` for one
    that is still active; the message says which.
    """

    def __init__(self, rid: UUID, message: str | None = None) -> None:
        super().__init__(message or f"Job not found: {rid}")
        self.rid = rid
        """The rid looked for."""


class JobAlreadyEndedError(QueuerError, RuntimeError):
    """``cancel_job`` found the job already ended: there is nothing to cancel."""

    def __init__(self, rid: UUID, status: str) -> None:
        super().__init__(f"job {rid} already ended as {status}; nothing to cancel")
        self.rid = rid
        """The job's rid."""
        self.status = status
        """The status it ended with ("SUCCEEDED", "FAILED" or "CANCELLED")."""


class JobWaitTimeoutError(QueuerError, TimeoutError):
    """``wait_for_job_finished`` timed out before the job ended."""

    def __init__(self, rid: UUID, timeout: float, status: str | None) -> None:
        state = f"it is still {status}" if status else "it was not found"
        super().__init__(
            f"job {rid} did not finish within {timeout:g} s ({state}); wait longer, "
            "check that a worker with its task is running (q.get_jobs / `queuer workers`)"
        )
        self.rid = rid
        """The job's rid."""
        self.status = status
        """The status it still had; None when it was no longer found."""


class DuplicateJobError(QueuerError):
    """A job with this ``unique_key`` is already queued or running (``Options(on_duplicate="error")``, the default)."""

    def __init__(self, unique_key: str) -> None:
        super().__init__(
            f"a job with unique_key {unique_key!r} is already queued or running; "
            "pass on_duplicate='skip' to ignore duplicates"
        )
        self.unique_key = unique_key
        """The key another job holds."""


class WorkerNotFoundError(QueuerError, LookupError):
    """No worker has this rid: it never existed, or its row was pruned.

    ``stop_worker`` and ``stop_worker_gracefully`` raise it.
    """

    def __init__(self, rid: UUID) -> None:
        super().__init__(f"Worker {rid} not found (it may have been pruned); list workers with q.get_workers()")
        self.rid = rid
        """The rid looked for."""


class WorkflowNotFoundError(QueuerError, LookupError):
    """No job, active or archived, belongs to this workflow."""

    def __init__(self, workflow_id: str) -> None:
        super().__init__(f"no workflow {workflow_id!r}: no job, active or archived, belongs to it")
        self.workflow_id = workflow_id


class UnknownDependencyError(QueuerError, ValueError):
    """A workflow job depends on a rid that names no job, active or archived; nothing was written."""


class StepNotSavedError(QueuerError, RuntimeError):
    """A step ran, but its attempt no longer holds the job (cancelled, timed out, rescued): its result was not kept."""


class CompletionRefusedError(QueuerError, RuntimeError):
    """``complete_tx`` on an attempt that no longer holds its job (rescued, cancelled, timed out): the caller's
    transaction is aborted, so nothing of it commits."""


class QueuerStoppedError(QueuerError, RuntimeError):
    """Deprecated, never raised: a stopped queuer reopens its connections when used again."""


__all__ = [
    "CompletionRefusedError",
    "ConfigurationError",
    "ConnectionLostError",
    "DatabaseUnreachableError",
    "DuplicateJobError",
    "DuplicateTaskError",
    "EncryptionError",
    "JobAlreadyEndedError",
    "JobNotFoundError",
    "JobOutcomeUnknownError",
    "JobWaitTimeoutError",
    "QueuerError",
    "StepNotSavedError",
    "TaskNotRegisteredError",
    "UnknownDependencyError",
    "WorkerNotFoundError",
    "WorkflowNotFoundError",
]
