"""The running job's context, readable from inside a task with ``queuer.current_job()``."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

if TYPE_CHECKING:
    from queuer.model.job import Job


class JobServices(Protocol):
    """What a running job may ask of the queuer that runs it (the worker sets them)."""

    def dependencies(self, context: JobContext) -> list[Job]: ...

    def store_step(self, context: JobContext, name: str, value: Any) -> Any: ...

    def stored_step(self, context: JobContext, name: str) -> tuple[bool, Any]: ...

    def workflow(self, context: JobContext) -> Any: ...

    def complete_tx(self, context: JobContext, conn: Any, result: Any) -> None: ...


@dataclass
class JobContext:
    """What a task may know about its own attempt.

    ``cancelled`` is set when the job is cancelled, times out, or its worker
    loses it; a long task should poll ``is_cancelled()`` or wait on it and stop.
    """

    id: int
    rid: UUID
    task_name: str
    attempt: int
    max_attempts: int
    parameters: list[Any]
    parameters_keyed: dict[str, Any]
    resources: Mapping[str, Any] = field(default_factory=dict)
    cancel_reason: str | None = None
    workflow_id: str | None = None
    """The workflow this job belongs to, if any."""
    depends_on: Sequence[UUID] = ()
    """The rids of the jobs this one waited for, in the order they were given."""
    steps: dict[str, Any] | None = field(default=None, repr=False)
    """Results of the job's steps so far, as stored (see ``step``); None before the first."""
    services: JobServices | None = field(default=None, repr=False)
    _workflow: Any = field(default=None, repr=False)
    completed_in_tx: bool = field(default=False, repr=False)
    # Made on first use: most jobs never look at it, and an Event is not free.
    _cancelled: threading.Event | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # Called once when the attempt is cancelled: how an async task's coroutine is interrupted.
    _on_cancel: list[Callable[[], None]] = field(default_factory=list, repr=False)

    @property
    def cancelled(self) -> threading.Event:
        """The event set when the attempt is cancelled: wait on it, or poll ``is_cancelled()``."""
        if self._cancelled is None:
            with self._lock:
                if self._cancelled is None:
                    self._cancelled = threading.Event()
        return self._cancelled

    def is_cancelled(self) -> bool:
        """True once the attempt is cancelled: the job was cancelled, timed out, or its worker lost it."""
        return self._cancelled is not None and self._cancelled.is_set()

    def wait_cancelled(self, timeout: float | None = None) -> bool:
        """Block until the job is cancelled (True) or ``timeout`` passes (False)."""
        return self.cancelled.wait(timeout)

    def cancel(self, reason: str) -> None:
        """Mark the attempt cancelled, for ``reason``; nothing happens when it already is.

        Sets ``cancel_reason`` and the ``cancelled`` event, then calls the ``on_cancel`` callbacks. The
        worker calls this when it ends an attempt early. It changes nothing in the database (a job is
        cancelled with ``Queuer.cancel_job``); in tests, it cancels a ``job_context``.
        """
        with self._lock:
            if self._cancelled is None:
                self._cancelled = threading.Event()
            elif self._cancelled.is_set():
                return
            self.cancel_reason = reason
            self._cancelled.set()
            callbacks, self._on_cancel = self._on_cancel, []
        for callback in callbacks:
            callback()

    def on_cancel(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the attempt is cancelled (at once if it already is)."""
        with self._lock:
            if not (self._cancelled is not None and self._cancelled.is_set()):
                self._on_cancel.append(callback)
                return
        callback()


    # -- workflows and steps ---------------------------------------------------

    def dependencies(self) -> list[Job]:
        """The jobs this one depends on, ended, in ``depends_on`` order, each with its ``status`` and ``result``."""
        if not self.depends_on:
            return []
        return self._services("dependencies()").dependencies(self)

    @property
    def workflow(self) -> Any:
        """The workflow of this job, to add jobs to it (``add_job``, ``add_jobs``, then ``commit()``).

        A job added here may depend on this job or on jobs added with it. RuntimeError for a job of no workflow.
        """
        if self.workflow_id is None:
            raise RuntimeError(f"job {self.rid} belongs to no workflow: add it with q.workflow(...) to use this")
        if self._workflow is None:
            self._workflow = self._services("workflow").workflow(self)
        return self._workflow

    def step(self, name: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` once for this job and keep its result (JSON) with the job.

        A later attempt of the same job (after a crash or a retry) gets the kept result back without
        running ``fn`` again, so only the step that was interrupted runs twice. The first run returns
        the result as it comes back from JSON too (a tuple as a list), so both runs see the same value.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"a step needs a name (a non-empty string), not {name!r}")
        services = self._services("step()")
        found, value = services.stored_step(self, name)
        if found:
            return value
        return services.store_step(self, name, fn(*args, **kwargs))

    def complete_tx(self, conn: Any, result: Any = None) -> None:
        """Archive this job as SUCCEEDED (with ``result``) inside the caller's transaction on ``conn``.

        If that transaction commits, the job is done, even if the worker dies right after; if it rolls
        back, or the worker dies first, the job runs again and none of its writes stay. An attempt that no
        longer holds its job (rescued, cancelled, timed out) cannot complete it: CompletionRefusedError,
        and the transaction is aborted, so nothing of it can commit. ``conn`` is a psycopg connection
        (a Django or SQLAlchemy one as ``add_job_tx`` takes it).
        """
        self._services("complete_tx()").complete_tx(self, conn, result)

    def _services(self, what: str) -> JobServices:
        if self.services is None:
            raise RuntimeError(f"{what} needs the queuer that runs this job (not available in run_task)")
        return self.services


class Snooze(Exception):
    """Raised by a task: put the job back as SCHEDULED ``seconds`` from now, spending no retry.

    The job's ``snoozes`` counts them; past ``WorkerSettings.max_snoozes`` the job ends FAILED.
    """

    def __init__(self, seconds: float) -> None:
        super().__init__(f"snooze for {seconds} s")
        self.seconds = seconds


_current: contextvars.ContextVar[JobContext | None] = contextvars.ContextVar(
    "queuer_current_job", default=None
)


def current_job() -> JobContext:
    """The context of the job running in this thread; RuntimeError outside a task."""
    ctx = _current.get()
    if ctx is None:
        raise RuntimeError("queuer.current_job() is only available inside a running task")
    return ctx


def set_current(ctx: JobContext | None) -> contextvars.Token[JobContext | None]:
    return _current.set(ctx)


def reset_current(token: contextvars.Token[JobContext | None]) -> None:
    _current.reset(token)
