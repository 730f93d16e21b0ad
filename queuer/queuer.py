"""Queuer: the public face of the library (queuerPy's API, Pythonic behaviour).

A Queuer is a producer as soon as it exists (add jobs, query, wait, cancel)
and becomes a worker when ``start()`` is called. A process that only produces
never registers a worker row, so it can never be mistaken for a dead worker.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from types import FrameType, TracebackType
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence, TypeVar
from uuid import UUID

import psycopg

from queuer.database.connection import Database
from queuer.database.job_db import DuplicateKeyError, JobDB, NewJob
from queuer.database.migrations import migrate
from queuer.database.schedule_db import ScheduleDB
from queuer.database.worker_db import WorkerDB
from queuer.helper.cron import validate_cron, validate_timezone
from queuer.model.cron_schedule import CronSchedule
from queuer.helper.config import DatabaseConfiguration
from queuer.helper.encryption import EncryptionError, Keyring
from queuer.helper.serialization import storable_size, to_json
from queuer.model.batch_job import BatchJob
from queuer.model.job import ENDED_STATUSES, Job, JobStatus
from queuer.model.options import OnError, Options
from queuer.model.task import Task, task_name_of
from queuer.model.worker import Worker, WorkerStatus
from queuer import registry
from queuer.errors import (
    DuplicateJobError,
    DuplicateTaskError,
    JobAlreadyEndedError,
    JobNotFoundError,
    JobWaitTimeoutError,
    QueuerStoppedError,
    TaskNotRegisteredError,
)
from queuer.runtime.notifier import Event, Notifier
from queuer.runtime.worker import WorkerRuntime
from queuer.settings import WorkerSettings

log = logging.getLogger("queuer")

F = TypeVar("F", bound=Callable[..., Any])
JobListener = Callable[[Job], None]

_NO_OPTIONS = Options()

# wait_for_job_finished re-reads the archive this often even without a NOTIFY,
# so a notification lost while the LISTEN connection was down delays, never hangs.
WAIT_RECHECK_SECONDS = 5.0


class Queuer:
    def __init__(
        self,
        name: str,
        max_concurrency: int,
        encryption_key: str | None = None,
        db_config: DatabaseConfiguration | None = None,
        *on_error: OnError,
        settings: WorkerSettings | None = None,
        resources: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ValueError("a queuer needs a non-empty name, e.g. new_queuer('image-service', 4)")
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ValueError(f"max_concurrency must be a positive integer, not {max_concurrency!r}")
        if len(on_error) > 1:
            raise ValueError("pass at most one OnError as the worker's default")
        if on_error and not isinstance(on_error[0], OnError):
            raise TypeError(f"worker options must be OnError, not {type(on_error[0]).__name__}")
        # Arguments and results are encrypted on this side; the database never sees a key.
        self.keyring: Keyring | None = Keyring.parse(encryption_key)
        self.name = name
        self.max_concurrency = max_concurrency
        self.default_on_error: OnError | None = on_error[0] if on_error else None
        self.settings = settings or WorkerSettings.from_env()
        self.resources: Mapping[str, Any] = dict(resources or {})
        self._default_options_json = (
            to_json({"on_error": self.default_on_error.to_dict()}, "the default OnError")
            if self.default_on_error else None
        )
        self.db_config = db_config or DatabaseConfiguration.from_env()
        self.db = Database(self.db_config, min_size=2, max_size=max(6, 4 + max_concurrency // 4), name=f"queuer-{name}")
        self.db.open()
        with self.db.connection() as conn:
            migrate(conn, self.db_config.schema)
        self.job_db = JobDB(self.db, self.keyring)
        self.worker_db = WorkerDB(self.db)
        self.schedule_db = ScheduleDB(self.db, self.job_db)
        self.tasks: dict[str, Task] = registry.registered_tasks()
        self.next_interval_funcs: dict[str, Callable[..., datetime]] = {}
        self.notifier = Notifier(self.db)
        self.notifier.subscribe(self._on_events)
        self.notifier.on_reconnect(self._wake_all_waiters)
        self._callbacks = ThreadPoolExecutor(1, thread_name_prefix="queuer-callback")
        self._listeners: dict[str, list[JobListener]] = {"insert": [], "update": [], "delete": []}
        self._waiters: dict[str, list[threading.Event]] = {}  # by rid as text, as NOTIFY sends it
        self._lock = threading.Lock()
        self._runtime: WorkerRuntime | None = None
        self._closed = False

    # -- context manager -------------------------------------------------------

    def __enter__(self) -> "Queuer":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else ("closed" if self._closed else "idle")
        return f"<Queuer {self.name!r} {state}, {self.max_concurrency} threads, {self.db_config.describe()}>"

    # -- tasks -----------------------------------------------------------------------

    def add_task(
        self,
        task: Callable[..., Any],
        name: str | None = None,
        *,
        concurrency_limit: int | None = None,
        requests_per_second: float | None = None,
        serialized: bool = False,
    ) -> Task:
        """Register a function as a task (name defaults to the function's name)."""
        new = registry.make_task(
            task, name,
            concurrency_limit=concurrency_limit, requests_per_second=requests_per_second, serialized=serialized,
        )
        with self._lock:
            existing = self.tasks.get(new.name)
            if existing is not None and existing.fn is not task:
                raise DuplicateTaskError(
                    f"another function is already registered as task {new.name!r}; "
                    "use add_task_with_name(fn, 'other-name')"
                )
            self.tasks[new.name] = new
        if self._runtime is not None:
            self.worker_db.update_tasks(self._runtime.worker_rid, list(self.tasks))
            self._runtime.poller.wake()
        return new

    def add_task_with_name(
        self,
        task: Callable[..., Any],
        name: str,
        *,
        concurrency_limit: int | None = None,
        requests_per_second: float | None = None,
        serialized: bool = False,
    ) -> Task:
        return self.add_task(
            task, name,
            concurrency_limit=concurrency_limit, requests_per_second=requests_per_second, serialized=serialized,
        )

    def task(
        self,
        name: str | None = None,
        *,
        concurrency_limit: int | None = None,
        requests_per_second: float | None = None,
        serialized: bool = False,
    ) -> Callable[[F], F]:
        """Decorator form of ``add_task`` for this queuer only."""

        def decorate(fn: F) -> F:
            self.add_task(
                fn, name,
                concurrency_limit=concurrency_limit, requests_per_second=requests_per_second, serialized=serialized,
            )
            return fn

        return decorate

    def add_next_interval_func(self, nif: Callable[..., datetime]) -> Worker | None:
        return self.add_next_interval_func_with_name(nif, task_name_of(nif))

    def add_next_interval_func_with_name(self, nif: Callable[..., datetime], name: str) -> Worker | None:
        """Register a function that returns the next run time of a recurring job."""
        if not callable(nif):
            raise TypeError("a next-interval function must be callable")
        registry.validate_task_name(name)
        with self._lock:
            existing = self.next_interval_funcs.get(name)
            if existing is not None and existing is not nif:
                raise DuplicateTaskError(f"another next-interval function is already registered as {name!r}")
            self.next_interval_funcs[name] = nif
        return self.worker

    # -- cron schedules --------------------------------------------------------------

    def schedule(self, name: str, cron: str, *, timezone: str = "UTC") -> Callable[[F], F]:
        """Decorator: run the function on a cron expression, as task ``name``.

        Five fields, or six with seconds last. Stored in the database: whichever
        workers run, each tick fires exactly once.
        """

        def decorate(fn: F) -> F:
            self.add_task_with_name(fn, name)
            self.add_schedule(name, cron, name, timezone=timezone)
            return fn

        return decorate

    def add_schedule(
        self, name: str, cron: str, task: Callable[..., Any] | str, *parameters: Any,
        timezone: str = "UTC", **parameters_keyed: Any,
    ) -> CronSchedule:
        """Add (or update) a cron schedule that adds a job of ``task`` with these arguments at each tick."""
        registry.validate_task_name(name)
        validate_cron(cron)
        validate_timezone(timezone)
        task_name = self._task_name(task)
        return self.schedule_db.upsert(
            name, cron, timezone, task_name,
            to_json(list(parameters), f"a positional argument of schedule {name!r}"),
            to_json(dict(parameters_keyed), f"a keyword argument of schedule {name!r}"),
        )

    def get_schedules(self) -> list[CronSchedule]:
        return self.schedule_db.list()

    def pause_schedule(self, name: str) -> CronSchedule:
        return self._schedule_or_raise(name, self.schedule_db.set_paused(name, True))

    def resume_schedule(self, name: str) -> CronSchedule:
        """Resume from the next tick after now; ticks missed while paused do not fire."""
        return self._schedule_or_raise(name, self.schedule_db.set_paused(name, False))

    def remove_schedule(self, name: str) -> None:
        if not self.schedule_db.remove(name):
            raise LookupError(f"no schedule named {name!r}")

    @staticmethod
    def _schedule_or_raise(name: str, schedule: CronSchedule | None) -> CronSchedule:
        if schedule is None:
            raise LookupError(f"no schedule named {name!r}")
        return schedule

    def _task_name(self, task: Callable[..., Any] | str) -> str:
        if isinstance(task, str):
            return registry.validate_task_name(task)
        if not callable(task):
            raise TypeError(f"task must be a registered function or a task name, not {type(task).__name__}")
        with self._lock:
            for registered in self.tasks.values():
                if registered.fn is task:
                    return registered.name
        raise TaskNotRegisteredError(getattr(task, "__name__", repr(task)))

    # -- adding jobs --------------------------------------------------------------------

    def _new_job(
        self,
        task: Callable[..., Any] | str,
        parameters: Sequence[Any],
        parameters_keyed: Mapping[str, Any],
        options: Options | None,
        origin_rid: UUID | None = None,
    ) -> NewJob:
        name = self._task_name(task)
        if options is not None and not isinstance(options, Options):
            raise TypeError(f"options must be Options, not {type(options).__name__}")
        if not isinstance(parameters_keyed, Mapping):
            raise TypeError("parameters_keyed must be a dict of keyword arguments")
        # Empty arguments and default options are the common case in batches: no encoder for them.
        params = to_json(list(parameters), f"a positional argument of job {name!r}") if parameters else "[]"
        keyed = (
            to_json(dict(parameters_keyed), f"a keyword argument of job {name!r}") if parameters_keyed else "{}"
        )
        size = storable_size(params, f"a positional argument of job {name!r}") + storable_size(
            keyed, f"a keyword argument of job {name!r}")
        if size > self.settings.max_payload_bytes:
            raise ValueError(
                f"the arguments of job {name!r} are {size:,} bytes of JSON, over the limit of "
                f"{self.settings.max_payload_bytes:,} (WorkerSettings.max_payload_bytes); store large "
                "data elsewhere and pass a reference"
            )
        on_error = (options.on_error if options else None) or self.default_on_error
        if options is None:
            stored_json = self._default_options_json
            options = _NO_OPTIONS
        else:
            stored = options.to_dict()
            if on_error is not None:
                stored["on_error"] = on_error.to_dict()
            stored_json = to_json(stored, f"the options of job {name!r}") if stored else None
        schedule = options.schedule
        after = options.execute_after
        scheduled_at = after if isinstance(after, datetime) else (schedule.start if schedule is not None else None)
        rid = uuid.uuid4()
        sealed = None
        if self.keyring is not None:
            # Bound to the first job of a series, so recurring runs and re-adds can open it.
            plain = '{"p":' + params + ',"k":' + keyed + "}"
            sealed = self.keyring.encrypt(plain.encode(), origin_rid or rid, "arguments")
            params, keyed = "[]", "{}"
        return NewJob(
            rid=rid,
            task_name=name,
            parameters=params,
            parameters_keyed=keyed,
            arguments_enc=sealed,
            origin_rid=origin_rid,
            options=stored_json,
            priority=options.priority,
            scheduled_at=scheduled_at,
            delay_seconds=after.total_seconds() if isinstance(after, timedelta) else 0.0,
            max_attempts=on_error.max_attempts if on_error else 1,
            timeout_seconds=on_error.timeout_seconds if on_error else None,
            unique_key=options.unique_key,
            serial_key=options.serial_key,
            skip_duplicate=options.on_duplicate == "skip",
        )

    def add_job(self, task: Callable[..., Any] | str, /, *parameters: Any, **parameters_keyed: Any) -> Job:
        """Add one job; ``task`` is a registered function or a task name."""
        return self.add_job_with_options(None, task, *parameters, **parameters_keyed)

    def add_job_with_options(
        self, options: Options | None, task: Callable[..., Any] | str, /, *parameters: Any, **parameters_keyed: Any
    ) -> Job:
        self._check_open()
        with _duplicates_as_errors():
            return self.job_db.insert_job(self._new_job(task, parameters, parameters_keyed, options))

    def add_jobs(self, batch_jobs: Iterable[BatchJob]) -> list[UUID]:
        """Add many jobs at once with COPY; all or none are inserted."""
        self._check_open()
        return self._insert_batch(batch_jobs, None)

    def add_job_tx(
        self, conn: psycopg.Connection[Any], task: Callable[..., Any] | str, /, *parameters: Any, **parameters_keyed: Any
    ) -> Job:
        """Insert on the caller's connection, inside the caller's transaction.

        The job exists only if that transaction commits; workers are woken at commit.
        """
        return self.add_job_with_options_tx(conn, None, task, *parameters, **parameters_keyed)

    def add_job_with_options_tx(
        self,
        conn: psycopg.Connection[Any],
        options: Options | None,
        task: Callable[..., Any] | str,
        /,
        *parameters: Any,
        **parameters_keyed: Any,
    ) -> Job:
        with _duplicates_as_errors():
            return self.job_db.insert_job(self._new_job(task, parameters, parameters_keyed, options), conn=conn)

    def add_jobs_tx(self, conn: psycopg.Connection[Any], batch_jobs: Iterable[BatchJob]) -> list[UUID]:
        return self._insert_batch(batch_jobs, conn)

    def _insert_batch(self, batch_jobs: Iterable[BatchJob], conn: psycopg.Connection[Any] | None) -> list[UUID]:
        items = list(batch_jobs)
        for index, item in enumerate(items):
            if not isinstance(item, BatchJob):
                raise TypeError(f"add_jobs takes BatchJob items; item {index} is {type(item).__name__}")
        with_keys = any(item.options is not None and item.options.unique_key for item in items)
        with _duplicates_as_errors():
            return self.job_db.insert_jobs(self._new_jobs(items), conn, unique_keys=with_keys)

    def _new_jobs(self, items: list[BatchJob]) -> Iterator[NewJob]:
        # A generator: COPY sends each row as it is built. A bad item raises
        # inside the COPY's transaction, so nothing of the batch is written.
        for index, item in enumerate(items):
            try:
                options = item.options
                if item.execute_after is not None:
                    options = replace(options or Options(), execute_after=item.execute_after)
                yield self._new_job(item.task, item.parameters or (), item.parameters_keyed or {}, options)
            except (TypeError, ValueError, LookupError) as exc:
                raise type(exc)(f"batch item {index}: {exc}") from None

    # -- reading jobs ------------------------------------------------------------------------

    def get_job(self, rid: UUID | str) -> Job:
        """The job with this rid, active or ended; JobNotFoundError if there is none."""
        rid = _as_uuid(rid)
        job = self.job_db.get_job(rid) or self.job_db.get_job_ended(rid)
        if job is None:
            raise JobNotFoundError(rid)
        return job

    def get_job_ended(self, rid: UUID | str) -> Job:
        """The archived (ended) job with this rid; JobNotFoundError if it has not ended."""
        rid = _as_uuid(rid)
        job = self.job_db.get_job_ended(rid)
        if job is None:
            raise JobNotFoundError(rid)
        return job

    def get_jobs(
        self,
        status: JobStatus | str | None = None,
        *,
        task_name: str | None = None,
        limit: int = 100,
        offset: int = 0,
        after_id: int | None = None,
    ) -> list[Job]:
        """Jobs by status (active statuses read ``job``, ended ones ``job_archive``), oldest first.

        Page with ``limit``/``offset``, or by keyset: pass the last job's ``id`` as ``after_id``.
        """
        parsed = JobStatus.parse(status) if status is not None else None
        _check_page(limit, offset)
        return self.job_db.get_jobs(
            ended=parsed in ENDED_STATUSES, status=parsed, task_name=task_name,
            limit=limit, offset=offset, after_id=after_id,
        )

    def get_jobs_ended(
        self, status: JobStatus | str | None = None, *, task_name: str | None = None,
        limit: int = 100, offset: int = 0, after_id: int | None = None,
    ) -> list[Job]:
        parsed = JobStatus.parse(status) if status is not None else None
        if parsed is not None and parsed not in ENDED_STATUSES:
            raise ValueError(f"{parsed.value} is not an ended status; use get_jobs for active jobs")
        _check_page(limit, offset)
        return self.job_db.get_jobs(
            ended=True, status=parsed, task_name=task_name, limit=limit, offset=offset, after_id=after_id
        )

    def get_jobs_by_worker_rid(self, worker_rid: UUID | str, limit: int = 100, offset: int = 0) -> list[Job]:
        """Active jobs held by a worker."""
        _check_page(limit, offset)
        return self.job_db.get_jobs(worker_rid=_as_uuid(worker_rid), limit=limit, offset=offset)

    # -- waiting and events ----------------------------------------------------------------

    def wait_for_job_finished(self, rid: UUID | str, timeout_seconds: float = 30.0) -> Job:
        """Block until the job is archived and return it; JobWaitTimeoutError on timeout.

        Woken by the NOTIFY its worker sends when the job ends.
        """
        rid = _as_uuid(rid)
        self._check_open()
        self.notifier.ensure_started()
        event = threading.Event()
        with self._lock:
            self._waiters.setdefault(str(rid), []).append(event)
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
                event.wait(min(remaining, WAIT_RECHECK_SECONDS))
                event.clear()
        finally:
            with self._lock:
                waiters = self._waiters.get(str(rid), [])
                if event in waiters:
                    waiters.remove(event)
                if not waiters:
                    self._waiters.pop(str(rid), None)

    def _wake_all_waiters(self) -> None:
        # After a reconnect a NOTIFY may have been missed: every waiter re-reads.
        with self._lock:
            for waiters in self._waiters.values():
                for waiter in waiters:
                    waiter.set()

    def listen_for_job_insert(self, fn: JobListener) -> None:
        """Call ``fn(job)`` for each added job (a batch gives one call per task, rid None)."""
        self._listen("insert", fn)

    def listen_for_job_update(self, fn: JobListener) -> None:
        """Call ``fn(job)`` when a job is re-queued for a retry or cancelled."""
        self._listen("update", fn)

    def listen_for_job_delete(self, fn: JobListener) -> None:
        """Call ``fn(job)`` when a job ends (moves to ``job_archive``); status is set."""
        self._listen("delete", fn)

    def _listen(self, kind: str, fn: JobListener) -> None:
        if not callable(fn):
            raise TypeError("a listener must be callable")
        self._check_open()
        with self._lock:
            self._listeners[kind].append(fn)
        self.notifier.ensure_started()

    def _on_events(self, events: list[Event]) -> None:
        calls: list[tuple[JobListener, Job]] = []
        with self._lock:
            if not self._waiters and not any(self._listeners.values()):
                return  # a busy worker's own batches of events: nobody here is waiting
            for event in events:
                if event.kind == "end" and event.rid is not None:
                    for waiter in self._waiters.get(event.rid, ()):
                        waiter.set()
                kind = {"insert": "insert", "retry": "update", "cancel": "update", "end": "delete"}.get(event.kind)
                if kind and self._listeners[kind]:
                    job = _event_job(event)
                    calls.extend((fn, job) for fn in self._listeners[kind])
        for fn, job in calls:
            self._callbacks.submit(_call_listener, fn, job)

    # -- managing jobs --------------------------------------------------------------------

    def cancel_job(self, rid: UUID | str) -> Job:
        """Cancel a queued, scheduled or running job; returns it as archived (CANCELLED).

        A running job's worker is told at once: the task's ``current_job()``
        reports cancelled, and whatever it returns later is discarded.
        """
        rid = _as_uuid(rid)
        job = self.job_db.cancel(rid, "cancelled by request")
        if job is not None:
            return job
        status = self.job_db.status_of(rid)
        if status is None:
            raise JobNotFoundError(rid)
        raise JobAlreadyEndedError(rid, status.value)

    def readd_job_from_archive(self, rid: UUID | str) -> Job:
        """Add an ended job again, as a new job with the same task, arguments and options."""
        old = self.get_job_ended(rid)
        stored = old.options
        if old.encrypted:
            raise EncryptionError(f"job {old.rid} is encrypted with a key this queuer does not have")
        new = self._new_job(old.task_name, old.parameters, old.parameters_keyed, stored and Options(
            on_error=stored.on_error, priority=old.priority, extra=stored.extra,
        ), origin_rid=old.rid)
        return self.job_db.insert_job(new)

    # -- workers -----------------------------------------------------------------------------

    @property
    def worker(self) -> Worker | None:
        """This queuer's worker row once started, else None."""
        return self._runtime.worker if self._runtime is not None else None

    @property
    def running(self) -> bool:
        return self._runtime is not None and not self._runtime.stopped.is_set()

    def get_worker(self, rid: UUID | str) -> Worker:
        worker = self.worker_db.get(_as_uuid(rid))
        if worker is None:
            raise LookupError(f"no worker with rid {rid}")
        return worker

    def get_workers(self, status: WorkerStatus | str | None = None, limit: int = 100, offset: int = 0) -> list[Worker]:
        parsed = WorkerStatus(str(status).upper()) if status is not None and not isinstance(status, WorkerStatus) else status
        return self.worker_db.list(parsed, limit, offset)

    def stop_worker(self, rid: UUID | str) -> bool:
        """Ask a worker (any process) to stop now: unstarted jobs are released, running ones abandoned."""
        return self.worker_db.request_stop(_as_uuid(rid), graceful=False)

    def stop_worker_gracefully(self, rid: UUID | str) -> bool:
        """Ask a worker (any process) to finish its running jobs and stop."""
        return self.worker_db.request_stop(_as_uuid(rid), graceful=True)

    # -- life cycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start working: returns at once; background threads claim and run jobs."""
        self._check_open()
        if self._runtime is not None:
            raise RuntimeError("this queuer was already started; create a new one to start again")
        if not self.tasks:
            log.warning("queuer %s starts with no tasks registered; it will claim nothing", self.name)
        self._runtime = WorkerRuntime(
            self.name, self.max_concurrency, self.tasks, self.job_db, self.worker_db, self.notifier,
            self.settings, self.default_on_error, self.resources, self.next_interval_funcs, self.keyring,
        )
        self._runtime.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop gracefully: finish running jobs (up to ``timeout``), release the rest, close connections."""
        if self._closed:
            return
        if self._runtime is not None:
            self._runtime.stop(timeout)
        self._closed = True
        self.notifier.stop()
        self._callbacks.shutdown(wait=False)
        self.db.close()

    close = stop

    def idle(self) -> bool:
        """True when this worker holds no job and none of its tasks has a job due now."""
        if self._runtime is not None and self._runtime.held():
            return False
        return not self.job_db.has_due_jobs(list(self.tasks))

    def wait_until_stopped(self, timeout: float | None = None) -> bool:
        """Block until the worker has stopped (by stop(), a signal or a stop request)."""
        if self._runtime is None:
            return True
        return self._runtime.stopped.wait(timeout)

    def install_signal_handlers(self, signals: Sequence[int] = (signal.SIGTERM, signal.SIGINT)) -> None:
        """On SIGTERM/SIGINT stop gracefully (call from the main thread)."""

        def handle(signum: int, frame: FrameType | None) -> None:
            log.info("received %s; shutting down gracefully", signal.Signals(signum).name)
            threading.Thread(target=self.stop, name="queuer-signal-stop", daemon=True).start()

        for sig in signals:
            signal.signal(sig, handle)

    def _check_open(self) -> None:
        if self._closed:
            raise QueuerStoppedError("this queuer was stopped; create a new one with new_queuer(...)")


def _as_uuid(rid: UUID | str | Job) -> UUID:
    if isinstance(rid, UUID):
        return rid
    if isinstance(rid, Job):
        return rid.rid
    try:
        return UUID(str(rid))
    except ValueError:
        raise ValueError(f"{rid!r} is not a job rid (a UUID)") from None


@contextmanager
def _duplicates_as_errors() -> Iterator[None]:
    try:
        yield
    except DuplicateKeyError as exc:
        raise DuplicateJobError(exc.unique_key) from None


def _check_page(limit: int, offset: int) -> None:
    if not isinstance(limit, int) or limit < 1:
        raise ValueError("limit must be a positive integer")
    if not isinstance(offset, int) or offset < 0:
        raise ValueError("offset must be an integer >= 0")


def _event_job(event: Event) -> Job:
    status = JobStatus.CANCELLED if event.kind == "cancel" else (
        JobStatus(event.detail) if event.kind == "end" and event.detail else JobStatus.QUEUED
    )
    task_name = event.detail if event.kind in ("insert", "retry") and event.detail else ""
    return Job(rid=UUID(event.rid) if event.rid else None, task_name=task_name, status=status)  # type: ignore[arg-type]


def _call_listener(fn: JobListener, job: Job) -> None:
    try:
        fn(job)
    except Exception:
        log.exception("a job listener failed; other listeners go on")

