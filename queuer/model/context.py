"""The running job's context, readable from inside a task with ``queuer.current_job()``."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID


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
