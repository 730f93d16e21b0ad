"""Queuer: the public face of the library (queuerPy's API, Pythonic behaviour).

A thin facade: tasks live in a TaskSet, job rows are built by a JobBuilder,
listeners and waiters in JobEvents, the running worker in a WorkerRuntime.

As in queuerPy, the constructor registers this process's worker row, READY:
a READY row claims nothing and the master never takes it for a dead worker,
so a process that only produces jobs costs one row and is never rescued.
``start()`` makes it RUNNING.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import FrameType, TracebackType
from typing import Any, TypeVar
from uuid import UUID

import psycopg

from queuer.client import registry
from queuer.client.enqueue import JobBuilder, check_batch, duplicates_as_errors
from queuer.client.events import JobEvents, JobListener
from queuer.client.jobs import JobQueries, as_uuid
from queuer.client.running_job import RunningJobServices
from queuer.client.tasks import NextIntervalFunc, TaskSet
from queuer.client.workflows import Workflow, validate_workflow_id
from queuer.config.database import DatabaseConfiguration
from queuer.config.settings import WorkerSettings
from queuer.database.attempt_db import AttemptDB
from queuer.database.callers import check_callers_connection, join_callers_transaction, on_callers_connection
from queuer.database.connection import Database
from queuer.database.control_db import ControlDB
from queuer.database.cron_db import CronDB
from queuer.database.job_db import JobDB
from queuer.database.migrations import installed_version, latest_version, migrate, uninstall
from queuer.database.worker_db import WorkerDB
from queuer.database.workflow_db import WorkflowDB
from queuer.errors import (
    ConfigurationError,
    DatabaseUnreachableError,
    JobWaitTimeoutError,
    WorkerNotFoundError,
    WorkflowNotFoundError,
)
from queuer.model.batch_job import BatchJob
from queuer.model.control import TaskControl
from queuer.model.cron import CronSchedule, validate_cron, validate_timezone
from queuer.model.job import Job, JobStatus
from queuer.model.options import OnError, Options
from queuer.model.task import Task
from queuer.model.worker import Worker, WorkerStatus
from queuer.model.workflow import WorkflowInfo
from queuer.observability import tracing
from queuer.observability.metrics import Scrape
from queuer.payload.encryption import Keyring
from queuer.payload.serialization import to_json
from queuer.runtime.notifier import Notifier
from queuer.runtime.worker import WorkerRuntime

log = logging.getLogger("queuer")

F = TypeVar("F", bound=Callable[..., Any])


class Queuer:
    """A job queue on one PostgreSQL schema: a producer from the start, a worker once ``start()`` is called.

    Make one with ``new_queuer`` or ``new_queuer_with_db``. Creating it installs or upgrades queuer's
    tables when needed and registers this process's worker row, READY: a READY worker claims nothing.
    ``start()`` makes it RUNNING, running up to ``max_concurrency`` jobs of its registered tasks in
    threads. Use it as a context manager, or call ``stop()``, to stop the worker and release its
    connections; a stopped queuer reopens them when used again.
    """

    def __init__(
        self,
        name: str,
        max_concurrency: int,
        encryption_key: str | None = None,
        db_config: DatabaseConfiguration | None = None,
        *on_error: OnError,
        settings: WorkerSettings | None = None,
        resources: Mapping[str, Any] | None = None,
        install: bool = True,
        register: bool = True,
    ) -> None:
        """``install=False``: never create or alter the schema (ConfigurationError when it is missing
        or older than this queuer); ``register=False``: no worker row, for tools that only read
        and add jobs (``start()`` then raises)."""
        if not isinstance(name, str) or not name.strip():
            raise ValueError("a queuer needs a non-empty name, e.g. new_queuer('image-service', 4)")
        registry.validate_task_name(name, "a queuer's name")
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ValueError(f"max_concurrency must be a positive integer, not {max_concurrency!r}")
        if len(on_error) > 1:
            raise ValueError("pass at most one OnError as the worker's default")
        if on_error and not isinstance(on_error[0], OnError):
            raise TypeError(f"worker options must be OnError, not {type(on_error[0]).__name__}")
        # Arguments and results are encrypted on this side; the database never sees a key.
        self.keyring: Keyring | None = Keyring.parse(encryption_key)
        self.name = name
        """The name of this queuer and of its worker row."""
        self.max_concurrency = max_concurrency
        """How many jobs its worker runs at once (threads)."""
        self.default_on_error: OnError | None = on_error[0] if on_error else None
        """The ``OnError`` for jobs that bring none (None: no retries, no timeout)."""
        self.settings = settings or WorkerSettings.from_env()
        """The worker's settings (given, or from ``QUEUER_<FIELD>`` variables)."""
        self.resources: Mapping[str, Any] = dict(resources or {})
        """Shared objects a task reads from ``current_job().resources``."""
        self.db_config = db_config or DatabaseConfiguration.from_env()
        """Where the queue lives (given, or from ``QUEUER_DB_*`` variables)."""
        self.db = Database(self.db_config, name=name)
        prepare_schema(self.db, install)
        self.job_db = JobDB(self.db, self.keyring)
        self.attempt_db = AttemptDB(self.db)
        self.worker_db = WorkerDB(self.db)
        self.cron_db = CronDB(self.db, self.job_db)
        self._tasks = TaskSet(registry.registered_tasks())
        self._jobs = JobBuilder(self._tasks, self.settings, self.default_on_error, self.keyring)
        self.workflow_db = WorkflowDB(self.db, self.job_db)
        self.control_db = ControlDB(self.db)
        self._job_services = RunningJobServices(
            self.workflow_db, self.attempt_db, self.keyring, self._workflow_builder, lambda: self.worker.rid,
            self.settings.max_payload_bytes)
        self.notifier = Notifier(self.db)
        self._events = JobEvents(self.notifier, self.job_db)
        self._queries = JobQueries(self.job_db, self._jobs)
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._forked = False
        self._runtime: WorkerRuntime | None = None
        self._registered = register
        self._worker: Worker = self.worker_db.insert(
            uuid.uuid4(), name, max_concurrency, list(self._tasks), self._worker_options(), WorkerStatus.READY
        ) if register else Worker(uuid.uuid4(), name, WorkerStatus.READY, max_concurrency)

    # -- context manager -------------------------------------------------------

    def __enter__(self) -> Queuer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "idle"
        return f"<Queuer {self.name!r} {state}, {self.max_concurrency} threads, {self.db_config.describe()}>"

    # -- tasks -----------------------------------------------------------------------

    @property
    def tasks(self) -> dict[str, Task]:
        """The registered tasks by name."""
        return self._tasks.tasks

    @property
    def next_interval_funcs(self) -> dict[str, NextIntervalFunc]:
        """The registered next-interval functions by name."""
        return self._tasks.next_interval_funcs

    def add_task(
        self,
        task: Callable[..., Any],
        name: str | None = None,
        *,
        concurrency_limit: int | None = None,
        requests_per_second: float | None = None,
        serialized: bool = False,
        group_concurrency_limit: int | None = None,
        group_requests_per_second: float | None = None,
    ) -> Task:
        """Register a function as a task (name defaults to the function's name; ``Class.method`` for a method)."""
        known = set(self._tasks)
        new = self._tasks.add(
            task, name,
            concurrency_limit=concurrency_limit, requests_per_second=requests_per_second, serialized=serialized,
            group_concurrency_limit=group_concurrency_limit,
            group_requests_per_second=group_requests_per_second,
        )
        if new.name not in known and self._registered:
            self._refresh_worker(self.worker_db.update_tasks(self.worker.rid, list(self._tasks)))
            if self._runtime is not None:
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
        group_concurrency_limit: int | None = None,
        group_requests_per_second: float | None = None,
    ) -> Task:
        """Register a function as task ``name``: ``add_task`` with the name required.

        Returns the Task; DuplicateTaskError when another function is registered under ``name``,
        ValueError for an invalid name or limit, TypeError when ``task`` is not callable.
        """
        return self.add_task(
            task, name,
            concurrency_limit=concurrency_limit, requests_per_second=requests_per_second, serialized=serialized,
            group_concurrency_limit=group_concurrency_limit,
            group_requests_per_second=group_requests_per_second,
        )

    def task(
        self,
        name: str | None = None,
        *,
        concurrency_limit: int | None = None,
        requests_per_second: float | None = None,
        serialized: bool = False,
        group_concurrency_limit: int | None = None,
        group_requests_per_second: float | None = None,
    ) -> Callable[[F], F]:
        """Decorator form of ``add_task`` for this queuer only."""

        def decorate(fn: F) -> F:
            self.add_task(
                fn, name,
                concurrency_limit=concurrency_limit, requests_per_second=requests_per_second, serialized=serialized,
                group_concurrency_limit=group_concurrency_limit,
                group_requests_per_second=group_requests_per_second,
            )
            return fn

        return decorate

    def task_with_name(self, name: str) -> Callable[[F], F]:
        """Decorator: register the function as task ``name`` on this queuer."""
        return self.task(name)

    def add_next_interval_func(self, nif: NextIntervalFunc) -> Worker:
        """Register a next-interval function under its own name (``Class.method`` for a method).

        Returns this queuer's worker, whose ``available_next_interval_funcs`` lists it. DuplicateTaskError
        when another function is registered under that name; see ``add_next_interval_func_with_name``.
        """
        return self.add_next_interval_func_with_name(nif, None)

    def add_next_interval_func_with_name(self, nif: NextIntervalFunc, name: str | None) -> Worker:
        """Register a function ``fn(start, count) -> datetime`` that gives a recurring job's next run time."""
        known = set(self._tasks.next_interval_funcs)
        added = self._tasks.add_next_interval_func(nif, name)
        if added not in known and self._registered:
            names = list(self._tasks.next_interval_funcs)
            self._refresh_worker(self.worker_db.update_next_interval_funcs(self.worker.rid, names))
        return self.worker

    def _refresh_worker(self, row: Worker | None) -> None:
        if row is not None:
            self._worker = row
            runtime = self._runtime
            if runtime is not None and runtime.worker is not None and runtime.worker.rid == row.rid:
                runtime.worker = row

    def _worker_options(self) -> dict[str, Any] | None:
        return self.default_on_error.to_dict() if self.default_on_error else None

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
        self, name: str, cron: str, task: Callable[..., Any] | str, /, *parameters: Any,
        timezone: str = "UTC", **parameters_keyed: Any,
    ) -> CronSchedule:
        """Add (or update) a cron schedule that adds a job of ``task`` with these arguments at each tick."""
        registry.validate_task_name(name, "a schedule name")
        validate_cron(cron)
        validate_timezone(timezone)
        task_name = self._tasks.name_of(task)
        return self.cron_db.upsert(
            name, cron, timezone, task_name,
            to_json(list(parameters), f"a positional argument of schedule {name!r}"),
            to_json(dict(parameters_keyed), f"a keyword argument of schedule {name!r}"),
        )

    def get_schedules(self) -> list[CronSchedule]:
        """Every cron schedule, paused ones included, by name."""
        return self.cron_db.list()

    def pause_schedule(self, name: str) -> CronSchedule:
        """Pause the schedule ``name``: no jobs until ``resume_schedule``. Returns it; LookupError if there is none."""
        return _schedule_or_raise(name, self.cron_db.set_paused(name, True))

    def resume_schedule(self, name: str) -> CronSchedule:
        """Resume from the next tick after now; ticks missed while paused do not fire."""
        return _schedule_or_raise(name, self.cron_db.set_paused(name, False))

    def remove_schedule(self, name: str) -> None:
        """Delete the schedule ``name`` (jobs it already added stay); LookupError if there is none."""
        if not self.cron_db.remove(name):
            raise LookupError(f"no schedule named {name!r}")

    # -- adding jobs --------------------------------------------------------------------

    def add_job(self, task: Callable[..., Any] | str, /, *parameters: Any, **parameters_keyed: Any) -> Job:
        """Add one job; ``task`` is a registered function or a task name."""
        return self.add_job_with_options(None, task, *parameters, **parameters_keyed)

    def add_job_with_options(
        self, options: Options | None, task: Callable[..., Any] | str, /, *parameters: Any, **parameters_keyed: Any
    ) -> Job:
        """Add one job with ``options`` (None: the worker's defaults) and return it.

        Raises TaskNotRegisteredError for a function that is not registered, TypeError for arguments that
        are not JSON (or options that are not ``Options``), ValueError for arguments larger than
        ``WorkerSettings.max_payload_bytes``, and DuplicateJobError when a job with the same ``unique_key``
        is queued or running (with ``on_duplicate="skip"``, that job is returned instead).
        """
        with tracing.sending() as spans:
            new = self._jobs.build(task, parameters, parameters_keyed, options, tracing=spans)
            with duplicates_as_errors():
                job = self.job_db.insert_job(new)
            spans.sent([job.rid])
            return job

    def add_jobs(self, batch_jobs: Iterable[BatchJob]) -> list[UUID]:
        """Add many jobs at once with COPY; all or none are inserted."""
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
        """``add_job_with_options`` on the caller's connection, inside the caller's transaction.

        The job exists only if that transaction commits. TypeError or ValueError when ``conn`` is not an
        open psycopg 3 connection; a database error raises a QueuerError (ConnectionLostError when the
        connection broke), never the driver's.
        """
        conn = check_callers_connection(conn)
        with tracing.sending() as spans:
            new = self._jobs.build(task, parameters, parameters_keyed, options, tracing=spans)
            with duplicates_as_errors(), on_callers_connection(conn):
                job = self.job_db.insert_job(new, conn=conn)
            spans.sent([job.rid])
            return job

    def add_jobs_tx(self, conn: psycopg.Connection[Any], batch_jobs: Iterable[BatchJob]) -> list[UUID]:
        """``add_jobs`` on the caller's connection, inside the caller's transaction; returns the rids.

        The jobs exist only if that transaction commits, and all or none of the batch is inserted.
        """
        conn = check_callers_connection(conn)
        with on_callers_connection(conn):
            join_callers_transaction(conn)
            return self._insert_batch(batch_jobs, conn)

    def _insert_batch(self, batch_jobs: Iterable[BatchJob], conn: psycopg.Connection[Any] | None) -> list[UUID]:
        items = list(batch_jobs)
        check_batch(items)
        with_keys = any(item.options is not None and item.options.unique_key for item in items)
        with tracing.sending() as spans, duplicates_as_errors():
            rids = self.job_db.insert_jobs(self._jobs.build_batch(items, spans), conn, unique_keys=with_keys)
            spans.sent(rids)
            return rids

    # -- reading jobs ------------------------------------------------------------------------

    def get_job(self, rid: UUID | str) -> Job:
        """The job with this rid, active or ended; JobNotFoundError ("Job not found") if there is none."""
        return self._queries.get(rid)

    def get_job_ended(self, rid: UUID | str) -> Job:
        """The archived (ended) job with this rid; JobNotFoundError if it has not ended."""
        return self._queries.get_ended(rid)

    def get_jobs(
        self,
        last_id: int | JobStatus | str | None = None,
        entries: int | None = None,
        *,
        status: JobStatus | str | None = None,
        task_name: str | None = None,
        limit: int = 100,
        offset: int = 0,
        after_id: int | None = None,
    ) -> list[Job]:
        """Jobs: queuerPy's pages, or filtered by status and task.

        ``get_jobs(last_id, entries)`` is queuerPy's form: queued, scheduled and
        running jobs, newest first, ``entries`` at a time; pass the last job's
        ``id`` for the next page (0 for the first). ``get_jobs(status=...)``
        filters (active statuses read ``job``, ended ones ``job_archive``),
        oldest first; page with ``limit``/``offset`` or keyset ``after_id``.
        """
        return self._queries.list(False, last_id, entries, status, task_name, limit, offset, after_id)

    def get_jobs_ended(
        self,
        last_id: int | JobStatus | str | None = None,
        entries: int | None = None,
        *,
        status: JobStatus | str | None = None,
        task_name: str | None = None,
        limit: int = 100,
        offset: int = 0,
        after_id: int | None = None,
    ) -> list[Job]:
        """Ended jobs; the same two forms as ``get_jobs``."""
        return self._queries.list(True, last_id, entries, status, task_name, limit, offset, after_id)

    def get_jobs_by_worker_rid(
        self, worker_rid: UUID | str, last_id: int = 0, entries: int = 100, *, limit: int | None = None,
        offset: int = 0,
    ) -> list[Job]:
        """Active jobs held by a worker, newest first (queuerPy's ``last_id``/``entries`` paging)."""
        return self._queries.by_worker(worker_rid, last_id, entries, limit, offset)

    # -- waiting and events ----------------------------------------------------------------

    def wait_for_job_finished(self, rid: UUID | str, timeout_seconds: float = 30.0) -> Job:
        """Block until the job is archived and return it; JobWaitTimeoutError on timeout.

        Woken by the NOTIFY its worker sends when the job ends.
        """
        return self._events.wait_for_end(as_uuid(rid), timeout_seconds)

    def listen_for_job_insert(self, notify_function: JobListener) -> None:
        """Call ``notify_function(job)`` for each added job (a batch gives one call per task, rid None)."""
        self._events.listen("insert", notify_function)

    def listen_for_job_update(self, notify_function: JobListener) -> None:
        """Call ``notify_function(job)`` when a job is re-queued for a retry or cancelled."""
        self._events.listen("update", notify_function)

    def listen_for_job_delete(self, notify_function: JobListener) -> None:
        """Call ``notify_function(job)`` when a job ends (moves to ``job_archive``); status is set."""
        self._events.listen("delete", notify_function)

    # -- managing jobs --------------------------------------------------------------------

    def cancel_job(self, rid: UUID | str) -> Job:
        """Cancel a queued, scheduled or running job; returns it as archived (CANCELLED).

        A running job's worker is told at once: the task's ``current_job()``
        reports cancelled, and whatever it returns later is discarded.
        """
        return self._queries.cancel(rid)

    def cancel_jobs(self, rids: Iterable[UUID | str]) -> list[Job]:
        """Cancel many jobs in one statement; returns those that were still queued or running.

        Jobs already ended (or unknown) are skipped, not an error: a bulk cancel
        races with jobs finishing.
        """
        return self._queries.cancel_many(rids)

    def readd_job_from_archive(self, rid: UUID | str) -> Job:
        """Add an ended job again, as a new job with the same task, arguments and options."""
        return self._queries.readd(rid)

    # -- steering tasks at runtime ------------------------------------------------------------

    def pause_task(self, name: str) -> TaskControl:
        """Stop every worker from starting jobs of task ``name`` (within a second); running ones finish.

        Kept in the database: it holds across restarts and for workers started later, until ``resume_task``.
        """
        return self.control_db.set_paused(registry.validate_task_name(name), True)

    def resume_task(self, name: str) -> TaskControl:
        """Let every worker start jobs of task ``name`` again."""
        return self.control_db.set_paused(registry.validate_task_name(name), False)

    def set_task_limits(self, name: str, *, concurrency_limit: int | None = None,
                        requests_per_second: float | None = None) -> TaskControl:
        """Replace task ``name``'s limits on every worker, without a redeploy (None: no such limit).

        They hold until ``reset_task_limits``; a task with no limits in the code can be given some too.
        """
        _check_limits(concurrency_limit, requests_per_second)
        return self.control_db.set_limits(registry.validate_task_name(name), True, concurrency_limit,
                                          requests_per_second)

    def reset_task_limits(self, name: str) -> TaskControl:
        """Give task ``name`` back the limits its code sets."""
        return self.control_db.set_limits(registry.validate_task_name(name), False, None, None)

    def task_controls(self) -> list[TaskControl]:
        """Every task with stored controls (paused, or with limits set at runtime), by name."""
        return self.control_db.all()

    # -- workflows ---------------------------------------------------------------------------

    def workflow(self, workflow_id: str | None = None) -> Workflow:
        """A builder of jobs that depend on jobs (a new id when none is given); nothing is written before
        its ``commit()``. See the Workflows guide."""
        workflow_id = workflow_id if workflow_id is not None else str(uuid.uuid4())
        return self._workflow_builder(validate_workflow_id(workflow_id), tracing.workflow_context(workflow_id))

    def _workflow_builder(self, workflow_id: str, trace_parent: Any = None) -> Workflow:
        return Workflow(workflow_id, self._jobs, self.job_db, self.workflow_db, trace_parent)

    def add_workflow_tx(self, conn: psycopg.Connection[Any], workflow: Workflow) -> list[UUID]:
        """Commit ``workflow`` inside the caller's transaction: its jobs exist only if that transaction commits."""
        return workflow.commit_tx(conn)

    def get_workflow(self, workflow_id: str) -> WorkflowInfo:
        """Every job of the workflow, active and ended; WorkflowNotFoundError when it has none."""
        jobs = self.workflow_db.jobs_of(workflow_id)
        if not jobs:
            raise WorkflowNotFoundError(workflow_id)
        return WorkflowInfo(workflow_id, jobs)

    def wait_for_workflow(self, workflow_id: str, timeout_seconds: float = 30.0) -> WorkflowInfo:
        """Wait until every job of the workflow has ended; JobWaitTimeoutError when one is still active then.

        It waits on the jobs it finds active, one after another, so jobs added meanwhile by running
        jobs are waited for too.
        """
        deadline = time.monotonic() + timeout_seconds
        while True:
            info = self.get_workflow(workflow_id)
            active = [job for job in info.jobs if not job.status.ended]
            if not active:
                return info
            left = deadline - time.monotonic()
            if left <= 0:
                raise JobWaitTimeoutError(active[0].rid, timeout_seconds, active[0].status.value)
            self.wait_for_job_finished(active[-1].rid, left)

    def cancel_workflow(self, workflow_id: str) -> list[Job]:
        """Cancel every job of the workflow that has not ended (waiting ones included); returns them."""
        return self.cancel_jobs(self.workflow_db.active_rids(workflow_id))

    # -- workers -----------------------------------------------------------------------------

    @property
    def worker(self) -> Worker:
        """This queuer's worker row: READY until ``start()``, then RUNNING."""
        self._check_fork()
        runtime = self._runtime
        if runtime is not None and runtime.worker is not None:
            return runtime.worker
        return self._worker

    @property
    def database(self) -> Database:
        """The connections of this queuer (queuerPy's ``queuer.database``); ``close()`` releases the idle ones."""
        return self.db

    @property
    def running(self) -> bool:
        """True between ``start()`` and the worker's stop."""
        self._check_fork()
        return self._runtime is not None and not self._runtime.stopped.is_set()

    def scrape(self) -> Scrape:
        """What the Prometheus endpoint of ``queuer run --metrics-port`` reports for this queuer."""
        jobs: list[tuple[str, str, int]] | None = None
        workers: list[tuple[str, int]] | None = None
        try:
            jobs, workers = self.job_db.count_by_task_and_status(), self.worker_db.count_by_status()
        except Exception:  # a scrape reports what it can
            log.warning("could not read queue depth for metrics", exc_info=True)
        runtime = self._runtime
        return Scrape(self.running, jobs, workers, runtime.counters() if runtime is not None else None)

    def _check_fork(self) -> None:
        """In a process forked from the one that made this queuer, it is a producer of its own.

        The parent's worker (its threads did not come along) stays the parent's;
        ``start()`` here registers a worker of this process. Connections are the
        Database's concern: they are opened anew on first use.
        """
        if self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._runtime = None
        self._forked = True

    def get_worker(self, rid: UUID | str) -> Worker | None:
        """The worker with this rid, or None."""
        return self.worker_db.get(as_uuid(rid))

    def get_workers(self, status: WorkerStatus | str | None = None, limit: int = 100, offset: int = 0) -> list[Worker]:
        """Workers of every process on this schema, oldest first, with ``status`` if given (any case).

        Stopped and dead workers stay listed until they are pruned. ValueError for an unknown status.
        """
        parsed = WorkerStatus(str(status).upper()) if status is not None and not isinstance(status, WorkerStatus) else status
        return self.worker_db.list(parsed, limit, offset)

    def stop_worker(self, rid: UUID | str) -> Worker:
        """Stop a worker (any process) now: its row shows STOPPED at once; unstarted jobs are released."""
        return self._request_stop(as_uuid(rid), graceful=False)

    def stop_worker_gracefully(self, rid: UUID | str) -> Worker:
        """Ask a worker (any process) to finish its running jobs and stop; its row shows STOPPING at once."""
        return self._request_stop(as_uuid(rid), graceful=True)

    def _request_stop(self, rid: UUID, graceful: bool) -> Worker:
        worker = self.worker_db.request_stop(rid, graceful=graceful)
        if worker is None:  # already stopped or dead, or unknown
            worker = self.worker_db.get(rid)
            if worker is None:
                raise WorkerNotFoundError(rid)
            return worker
        if rid == self.worker.rid:
            self._refresh_worker(worker)
        return worker

    # -- life cycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start working: returns at once; background threads claim and run jobs."""
        with self._lock:
            if self.running:
                raise RuntimeError("Queuer is already running")
            if not self._registered:
                raise RuntimeError("this queuer was made with register=False: it cannot start a worker")
            if self._forked:  # the row we know is the parent's worker
                self._worker = self.worker_db.insert(
                    uuid.uuid4(), self.name, self.max_concurrency, list(self._tasks), self._worker_options(),
                    WorkerStatus.READY,
                )
                self._forked = False
            if not self._tasks:
                log.warning("queuer %s starts with no tasks registered; it will claim nothing", self.name)
            self.db.role = "worker"
            self.db.release_idle()  # idle connections named for a producer: new ones say "worker"
            self._runtime = WorkerRuntime(
                self.name, self.max_concurrency, self._tasks.tasks, self.attempt_db, self.worker_db, self.cron_db,
                self.control_db, self.notifier,
                self.settings, self.default_on_error, self.resources, self._tasks.next_interval_funcs,
                self.keyring, worker_rid=self._worker.rid, worker_options=self._worker_options(),
                job_services=self._job_services,
            )
            self._runtime.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop gracefully: finish running jobs (up to ``timeout``), release the rest, close connections.

        The queuer stays usable: a later call reopens its connections, and ``start()`` works again.
        """
        self._check_fork()
        with self._lock:
            runtime = self._runtime
            if runtime is not None:
                runtime.stop(timeout)
                self._refresh_worker(runtime.worker)
                self._runtime = None
            elif self._worker.status != WorkerStatus.STOPPED and not self._forked and self._registered:
                try:
                    self._refresh_worker(self.worker_db.set_status(self._worker.rid, WorkerStatus.STOPPED))
                except DatabaseUnreachableError as exc:
                    log.warning("could not mark worker %s STOPPED: %s", self._worker.rid, exc)
            self.notifier.stop()
            self._events.close()
            self.db.release_idle()

    close = stop
    """The same as ``stop()``."""

    def idle(self) -> bool:
        """True when this worker holds no job and none of its tasks has a job due now."""
        if self._runtime is not None and self._runtime.held():
            return False
        return not self.attempt_db.has_due_jobs(list(self._tasks))

    def wait_until_stopped(self, timeout: float | None = None) -> bool:
        """Block until the worker has stopped (by stop(), a signal or a stop request)."""
        runtime = self._runtime
        if runtime is None:
            return True
        return runtime.stopped.wait(timeout)

    def install_signal_handlers(self, signals: Sequence[int] = (signal.SIGTERM, signal.SIGINT)) -> None:
        """On SIGTERM/SIGINT stop gracefully (call from the main thread)."""

        def handle(signum: int, frame: FrameType | None) -> None:
            log.info("received %s; shutting down gracefully", signal.Signals(signum).name)
            threading.Thread(target=self.stop, name="queuer-signal-stop", daemon=True).start()

        for sig in signals:
            signal.signal(sig, handle)


def _schedule_or_raise(name: str, schedule: CronSchedule | None) -> CronSchedule:
    if schedule is None:
        raise LookupError(f"no schedule named {name!r}")
    return schedule


def prepare_schema(db: Database, install: bool) -> None:
    """Wait for the server, then install or upgrade the schema (``install``) or check that it is current."""
    db.wait_until_reachable(db.config.startup_wait)
    with db.connection() as conn:
        if not install:
            _check_installed(conn, db.config.schema)
        else:
            if db.config.with_table_drop:
                uninstall(conn, db.config.schema)
            migrate(conn, db.config.schema)


def _check_installed(conn: psycopg.Connection[Any], schema: str) -> None:
    installed, latest = installed_version(conn, schema), latest_version()
    if installed == 0:
        raise ConfigurationError(f"queuer is not installed in schema {schema}: run `queuer install`")
    if installed < latest:
        raise ConfigurationError(
            f"queuer's tables in schema {schema} are at version {installed}, this queuer needs {latest}: "
            "run `queuer upgrade`"
        )


def _check_limits(concurrency_limit: int | None, requests_per_second: float | None) -> None:
    if concurrency_limit is not None and (isinstance(concurrency_limit, bool) or not isinstance(concurrency_limit, int)
                                          or concurrency_limit < 1):
        raise ValueError(f"concurrency_limit must be a whole number of at least 1 (or None), not {concurrency_limit!r}")
    if requests_per_second is not None and (isinstance(requests_per_second, bool)
                                            or not isinstance(requests_per_second, (int, float))
                                            or not 0 < requests_per_second < float("inf")):
        raise ValueError(f"requests_per_second must be a positive number (or None), not {requests_per_second!r}")
