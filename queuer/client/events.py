"""JobEvents: the user's job listeners and the callers waiting for jobs to end.

Both are fed by the Notifier (the LISTEN thread). Listeners run on one
callback thread, so a slow listener never delays the LISTEN connection.
A waiter also re-reads the archive every few seconds: a notification lost
while the LISTEN connection was down delays a waiter, never hangs it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from uuid import UUID

from queuer.database.forks import start_over_after_fork
from queuer.database.job_db import JobDB
from queuer.errors import ConfigurationError, JobNotFoundError, JobWaitTimeoutError
from queuer.model.job import Job, JobStatus
from queuer.runtime.notifier import Event, EventKind, Notifier

log = logging.getLogger("queuer")

JobListener = Callable[[Job], None]

WAIT_RECHECK_SECONDS = 5.0
# Without a session (no NOTIFY) a waiter reads the archive this often instead.
SESSIONLESS_RECHECK_SECONDS = 0.2

# Which notification kinds each listener kind hears.
_LISTENER_KIND = {EventKind.INSERT: "insert", EventKind.RETRY: "update", EventKind.CANCEL: "update", EventKind.END: "delete"}


class JobEvents:
    def __init__(self, notifier: Notifier, job_db: JobDB) -> None:
        self.notifier = notifier
        self.job_db = job_db
        self._lock = threading.Lock()
        self._listeners: dict[str, list[JobListener]] = {"insert": [], "update": [], "delete": []}
        self._waiters: dict[str, list[threading.Event]] = {}  # by rid as text, as NOTIFY sends it
        self._callbacks: ThreadPoolExecutor | None = None
        start_over_after_fork(self)
        notifier.subscribe(self._on_events, lambda only_ends: bool(self._waiters or self._listeners["delete"]))
        notifier.on_reconnect(self._wake_all_waiters)

    # -- listeners -------------------------------------------------------------------

    def listen(self, kind: str, notify_function: JobListener) -> None:
        if not callable(notify_function):
            raise TypeError("a listener must be callable, e.g. q.listen_for_job_delete(lambda job: print(job))")
        if not self.notifier.db.has_session:
            raise ConfigurationError(
                "listening for job events needs a session for LISTEN, which a transaction pooler cannot give: "
                "set QUEUER_DB_DIRECT_URL to a direct (or session-pooled) URL"
            )
        with self._lock:
            self._listeners[kind].append(notify_function)
            if self._callbacks is None:
                self._callbacks = ThreadPoolExecutor(1, thread_name_prefix="queuer-callback")
        self.notifier.ensure_started()

    def after_fork_in_child(self) -> None:
        """Right after a fork: the parent's waiters and callback thread are not here; another thread
        may have held the lock at the fork."""
        self._lock = threading.Lock()
        self._waiters = {}
        self._callbacks = None

    def close(self) -> None:
        with self._lock:
            callbacks, self._callbacks = self._callbacks, None
        if callbacks is not None:
            callbacks.shutdown(wait=False)

    # -- waiting ---------------------------------------------------------------------

    def wait_for_end(self, rid: UUID, timeout_seconds: float) -> Job:
        self.notifier.ensure_started()
        event = threading.Event()
        key = str(rid)
        with self._lock:
            self._waiters.setdefault(key, []).append(event)
        try:
            deadline = time.monotonic() + timeout_seconds
            if self.job_db.status_of(rid) is None:
                raise JobNotFoundError(rid)
            while True:
                job = self.job_db.get_job_ended(rid)
                if job is not None:
                    return job
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    status = self.job_db.status_of(rid)
                    raise JobWaitTimeoutError(rid, timeout_seconds, status.value if status else None)
                recheck = WAIT_RECHECK_SECONDS if self.notifier.db.has_session else SESSIONLESS_RECHECK_SECONDS
                event.wait(min(remaining, recheck))
                event.clear()
        finally:
            with self._lock:
                waiters = self._waiters.get(key, [])
                if event in waiters:
                    waiters.remove(event)
                if not waiters:
                    self._waiters.pop(key, None)

    def _wake_all_waiters(self) -> None:
        # After a reconnect a NOTIFY may have been missed: every waiter re-reads.
        with self._lock:
            for waiters in self._waiters.values():
                for waiter in waiters:
                    waiter.set()

    # -- dispatch --------------------------------------------------------------------

    def _on_events(self, events: list[Event]) -> None:
        calls: list[tuple[JobListener, Job]] = []
        with self._lock:
            if not self._waiters and not any(self._listeners.values()):
                return  # a busy worker's own batches of events: nobody here is waiting
            for event in events:
                if event.kind is EventKind.END and event.rid is not None:
                    for waiter in self._waiters.get(event.rid, ()):
                        waiter.set()
                kind = _LISTENER_KIND.get(event.kind)
                if kind and self._listeners[kind]:
                    job = event_job(event)
                    calls.extend((fn, job) for fn in self._listeners[kind])
            executor = self._callbacks
        if executor is None:
            return
        for fn, job in calls:
            try:
                executor.submit(_call_listener, fn, job)
            except RuntimeError:
                return  # closed meanwhile


def event_job(event: Event) -> Job:
    """A notification as the Job a listener gets: rid, task name and status (the async client's events too)."""
    if event.kind is EventKind.END:
        status, task_name = JobStatus(event.detail or "SUCCEEDED"), event.extra or ""
    elif event.kind is EventKind.CANCEL:
        status, task_name = JobStatus.CANCELLED, event.extra or ""
    else:  # insert, retry
        status, task_name = JobStatus(event.extra or "QUEUED"), event.detail or ""
    return Job(rid=UUID(event.rid) if event.rid else None, task_name=task_name, status=status)  # type: ignore[arg-type]


def _call_listener(fn: JobListener, job: Job) -> None:
    try:
        fn(job)
    except Exception:
        log.exception("a job listener failed; other listeners go on")
