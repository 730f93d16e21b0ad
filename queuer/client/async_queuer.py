"""AsyncQueuer: the producer half of the API for asyncio, never blocking the event loop.

It shares the sync client's pieces: jobs are built and checked by the same
``JobBuilder`` (validation, JSON, encryption, tracing), rows are read by
``open_job_row``, every statement is one of ``Queries``, batches go through
``copy_chunks``, and connections are opened with the same parameters and
settings as the sync pool's (``AsyncDatabase``). Only the I/O is its own.

``new_async_queuer`` installs or upgrades the schema as ``new_queuer`` does,
through the sync client's own code, in a thread. An AsyncQueuer belongs to the
event loop it was made in; it registers no worker row and runs no jobs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from queuer.client import registry
from queuer.client.enqueue import JobBuilder, check_batch, duplicates_as_errors
from queuer.client.events import SESSIONLESS_RECHECK_SECONDS, WAIT_RECHECK_SECONDS, event_job
from queuer.client.jobs import as_uuid, check_page, rids_to_cancel
from queuer.client.queuer import prepare_schema
from queuer.client.tasks import TaskSet
from queuer.config.database import DatabaseConfiguration
from queuer.config.settings import WorkerSettings
from queuer.database.async_pool import AsyncDatabase
from queuer.database.backoff import Backoff
from queuer.database.callers import (
    check_callers_async_connection,
    join_callers_transaction_async,
    on_callers_connection,
)
from queuer.database.connect import close_quietly_async
from queuer.database.connection import Database
from queuer.database.copy_format import copy_chunks
from queuer.database.job_db import LOOKUP_MIN_SECONDS, DuplicateKeyError, insert_params, open_job_row, outcome_unknown
from queuer.database.tolerant_json import TolerantJsonbLoader, TolerantJsonLoader
from queuer.errors import (
    ConnectionLostError,
    DatabaseUnreachableError,
    JobAlreadyEndedError,
    JobNotFoundError,
    JobOutcomeUnknownError,
    JobWaitTimeoutError,
    QueuerError,
)
from queuer.model.batch_job import BatchJob
from queuer.model.job import ENDED_STATUSES, Job, JobStatus
from queuer.model.options import OnError, Options
from queuer.model.rows import NewJob
from queuer.model.task import Task
from queuer.observability import tracing
from queuer.observability.tracing import Sending
from queuer.payload.encryption import Keyring
from queuer.runtime.notifier import EventKind, parse_payload

log = logging.getLogger("queuer")

# The notifications that are about jobs, by the name a JobEvent gives them.
_JOB_EVENTS = {EventKind.INSERT: "insert", EventKind.RETRY: "retry", EventKind.CANCEL: "cancel",
               EventKind.END: "end"}


@dataclass(frozen=True)
class JobEvent:
    """One job event: ``kind`` is "insert", "retry", "cancel" or "end"; ``job`` holds rid, task name and status.

    A batch (``add_jobs``) is announced by one insert per task, with ``job.rid`` None.
    """

    kind: str
    job: Job


async def new_async_queuer(
    name: str,
    *on_error: OnError,
    db_config: DatabaseConfiguration | None = None,
    encryption_key: str | None = None,
    settings: WorkerSettings | None = None,
    install: bool = True,
) -> AsyncQueuer:
    """An AsyncQueuer: ``aq = await new_async_queuer("api")``; close it with ``await aq.close()`` or ``async with aq``.

    Configured like ``new_queuer``: ``db_config`` (None: ``QUEUER_DB_*``), ``encryption_key`` (None:
    ``QUEUER_ENCRYPTION_KEY``), one ``OnError`` as the default of its jobs. The schema is installed or
    upgraded as ``new_queuer`` does (``install=False``: only checked).
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError("a queuer needs a non-empty name, e.g. await new_async_queuer('api')")
    registry.validate_task_name(name, "a queuer's name")
    if len(on_error) > 1 or (on_error and not isinstance(on_error[0], OnError)):
        raise TypeError("pass at most one OnError as the default of the jobs")
    keyring = Keyring.parse(encryption_key if encryption_key is not None
                            else os.environ.get("QUEUER_ENCRYPTION_KEY") or None)
    db = Database(db_config or DatabaseConfiguration.from_env(), name=name)
    # The sync client's migration path, in a thread so that the loop goes on meanwhile.
    await asyncio.to_thread(_prepare, db, install)
    return AsyncQueuer(name, db, keyring, settings or WorkerSettings.from_env(), on_error[0] if on_error else None)


def _prepare(db: Database, install: bool) -> None:
    try:
        prepare_schema(db, install)
    finally:
        db.release_idle()  # its connection is done with: the async pool opens its own


class AsyncQueuer:
    """Adds, reads, cancels and waits for jobs from asyncio code. Make one with ``new_async_queuer``."""

    def __init__(self, name: str, db: Database, keyring: Keyring | None, settings: WorkerSettings,
                 default_on_error: OnError | None) -> None:
        self.name = name
        self.db_config = db.config
        self.keyring = keyring
        self.settings = settings
        self._db = AsyncDatabase(db)
        self._q = db.queries
        self._channel = db.channel
        self._tasks = TaskSet(registry.registered_tasks())
        self._jobs = JobBuilder(self._tasks, settings, default_on_error, keyring)
        self._listener = _Listener(db)

    async def __aenter__(self) -> AsyncQueuer:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<AsyncQueuer {self.name!r}, {self.db_config.describe()}>"

    async def close(self) -> None:
        """Stop listening and close the connections; event streams end."""
        await self._listener.close()
        await self._db.close()

    def add_task(self, task: Callable[..., Any], name: str | None = None) -> Task:
        """Know a function as a task, so that jobs can name it by the function (no worker runs it here).

        Functions registered with ``@queuer.task`` are known already; a task name always works.
        """
        return self._tasks.add(task, name)

    # -- adding jobs --------------------------------------------------------------------

    async def add_job(self, task: Callable[..., Any] | str, /, *parameters: Any, **parameters_keyed: Any) -> Job:
        """Add one job; ``task`` is a registered function or a task name."""
        return await self.add_job_with_options(None, task, *parameters, **parameters_keyed)

    async def add_job_with_options(
        self, options: Options | None, task: Callable[..., Any] | str, /, *parameters: Any, **parameters_keyed: Any
    ) -> Job:
        """Add one job with ``options``; the errors of ``Queuer.add_job_with_options``."""
        # The connection first: a thousand calls at once each stop there before doing any work, so
        # the loop runs only as many builds at a time as there are connections.
        deadline = self._db.deadline()
        conn = await self._db.pool.borrow(deadline)
        with tracing.sending() as spans:
            try:
                new = self._jobs.build(task, parameters, parameters_keyed, options, tracing=spans)
            except BaseException:
                self._db.pool.give_back(conn)
                raise
            with duplicates_as_errors():
                job = await self._insert(conn, new, deadline)
            spans.sent([job.rid])
            return job

    async def add_job_tx(self, conn: psycopg.AsyncConnection[Any], task: Callable[..., Any] | str, /,
                         *parameters: Any, **parameters_keyed: Any) -> Job:
        """Insert on the caller's AsyncConnection, inside its transaction: the job exists only if it commits."""
        return await self.add_job_with_options_tx(conn, None, task, *parameters, **parameters_keyed)

    async def add_job_with_options_tx(
        self, conn: psycopg.AsyncConnection[Any], options: Options | None, task: Callable[..., Any] | str, /,
        *parameters: Any, **parameters_keyed: Any,
    ) -> Job:
        """``add_job_with_options`` on the caller's AsyncConnection, inside the caller's transaction."""
        conn = check_callers_async_connection(conn)
        with tracing.sending() as spans:
            new = self._jobs.build(task, parameters, parameters_keyed, options, tracing=spans)
            with duplicates_as_errors(), on_callers_connection(conn):
                job = await self._insert_on(_our_cursor(conn), new)
            spans.sent([job.rid])
            return job

    async def add_jobs(self, batch_jobs: Iterable[BatchJob]) -> list[UUID]:
        """Add many jobs at once with COPY, all or none; returns their rids."""
        items = list(batch_jobs)
        check_batch(items)
        with tracing.sending() as spans, duplicates_as_errors():
            rids = await self._insert_batch(items, spans)
            spans.sent(rids)
            return rids

    async def add_jobs_tx(self, conn: psycopg.AsyncConnection[Any], batch_jobs: Iterable[BatchJob]) -> list[UUID]:
        """``add_jobs`` on the caller's AsyncConnection, inside its transaction: all or none of the batch, and
        only if that transaction commits; returns the rids."""
        conn = check_callers_async_connection(conn)
        items = list(batch_jobs)
        check_batch(items)
        rids: list[UUID] = []
        with tracing.sending() as spans, duplicates_as_errors(), on_callers_connection(conn):
            await join_callers_transaction_async(conn)
            async with conn.transaction():  # a savepoint in the caller's: a failed batch leaves the rest of it
                await self._insert_batch_on(_our_cursor(conn), items, spans, rids)
            spans.sent(rids)
            return rids

    async def _insert(self, conn: psycopg.AsyncConnection[Any], new: NewJob, deadline: float) -> Job:
        try:
            with self._db.lent(conn):
                return await self._insert_on(conn.cursor(row_factory=dict_row), new)
        except ConnectionLostError as exc:
            found = await self._find_after_loss(new.rid, deadline)
            if found is not None:
                return found
            raise JobOutcomeUnknownError(outcome_unknown(new.rid, 1), new.rid) from exc

    async def _insert_on(self, cur: psycopg.AsyncCursor[dict[str, Any]], new: NewJob) -> Job:
        """``JobDB._insert_job``'s statements, awaited."""
        q = self._q
        await cur.execute(q.insert_job_replace if new.replace_duplicate else q.insert_job,
                          insert_params(new, self._channel))
        row = await cur.fetchone()
        if row is not None:
            return open_job_row(row, self.keyring)
        assert new.unique_key is not None  # no row: a duplicate of a job with this key
        existing = await (await cur.execute(q.get_job_by_unique_key, {"unique_key": new.unique_key})).fetchone()
        if existing is None and new.unique_for_seconds is not None:
            existing = await (await cur.execute(q.get_job_ended_by_unique_key, {
                "unique_key": new.unique_key, "unique_for": new.unique_for_seconds})).fetchone()
        if not (new.skip_duplicate or new.replace_duplicate) or existing is None:
            raise DuplicateKeyError(new.unique_key)
        return open_job_row(existing, self.keyring)

    async def _insert_batch(self, items: list[BatchJob], spans: Sending) -> list[UUID]:
        rids: list[UUID] = []
        deadline = self._db.deadline()
        try:
            async with self._db.connection(deadline) as conn, conn.transaction():
                await self._insert_batch_on(conn.cursor(row_factory=dict_row), items, spans, rids)
        except ConnectionLostError as exc:
            if rids and await self._find_after_loss(rids[0], deadline) is not None:
                raise JobOutcomeUnknownError(
                    "the connection broke after the batch was committed, before its rids came back: "
                    "every job of it exists; read them with get_jobs", rids[0]) from exc
            first = rids[0] if rids else None
            raise JobOutcomeUnknownError(outcome_unknown(first, 2), first) from exc
        return rids

    async def _insert_batch_on(self, cur: psycopg.AsyncCursor[dict[str, Any]], items: list[BatchJob], spans: Sending,
                               rids: list[UUID]) -> None:
        """Insert the batch in ``cur``'s transaction, appending each rid to ``rids`` once known."""
        jobs = self._jobs.build_batch(items, spans)
        if any(item.options is not None and item.options.unique_key for item in items):
            for new in jobs:  # COPY cannot skip a conflict: row by row, as the sync client does
                rids.append((await self._insert_on(cur, new)).rid)
            return
        await self._copy(cur, jobs, rids)

    async def _copy(self, cur: psycopg.AsyncCursor[dict[str, Any]], jobs: Iterator[NewJob], rids: list[UUID]) -> None:
        q = self._q
        now = (await (await cur.execute(q.transaction_start)).fetchone())["now"]  # type: ignore[index]
        task_names: set[str] = set()
        unkeyed: set[str] = set()
        chunks = copy_chunks(jobs, now, rids, task_names, unkeyed)
        async with cur.copy(q.copy_jobs) as copy:
            # Building a chunk (JSON, encryption) is CPU work: in a thread, so the loop is never held up.
            while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
                await copy.write(chunk)
        if not rids:
            return
        notified = await (await cur.execute(q.notify_inserted_tasks, {
            "channel": self._channel, "task_names": sorted(task_names), "unkeyed": sorted(unkeyed)})).fetchone()
        if notified and notified["grouped"]:  # jobs of a task claimed by group always have a key
            await cur.execute(q.key_grouped_jobs, {"rids": rids, "task_names": notified["grouped"]})

    async def _find_after_loss(self, rid: UUID, deadline: float) -> Job | None:
        """After a connection broke mid-insert: the job, if it was committed and the server answers in time."""
        if deadline - time.monotonic() < LOOKUP_MIN_SECONDS:
            return None
        try:
            return await self._read(rid, ended=False) or await self._read(rid, ended=True)
        except (DatabaseUnreachableError, ConnectionLostError):
            return None

    # -- reading jobs ------------------------------------------------------------------------

    async def get_job(self, rid: UUID | str) -> Job:
        """The job with this rid, active or ended; JobNotFoundError if there is none."""
        rid = as_uuid(rid)
        job = await self._read(rid, ended=False) or await self._read(rid, ended=True)
        if job is None:
            raise JobNotFoundError(rid)
        return job

    async def get_job_ended(self, rid: UUID | str) -> Job:
        """The archived (ended) job with this rid; JobNotFoundError if it has not ended."""
        rid = as_uuid(rid)
        job = await self._read(rid, ended=True)
        if job is None:
            raise JobNotFoundError(rid, f"Job not found in archive: {rid}")
        return job

    async def get_jobs(self, *, status: JobStatus | str | None = None, task_name: str | None = None,
                       limit: int = 100, offset: int = 0, after_id: int | None = None) -> list[Job]:
        """Active jobs, oldest first, filtered by status and task (an ended status reads the archive);
        page with ``limit``/``offset`` or keyset ``after_id``, as ``Queuer.get_jobs``."""
        parsed = JobStatus.parse(status) if status is not None else None
        check_page(limit, offset)
        rows = await self._db.execute(self._q.get_jobs_ended if parsed in ENDED_STATUSES else self._q.get_jobs, {
            "status": parsed.value if parsed else None, "task_name": task_name, "worker_rid": None,
            "limit": limit, "offset": offset, "after_id": after_id,
        })
        return [open_job_row(row, self.keyring) for row in rows]

    async def _read(self, rid: UUID, *, ended: bool) -> Job | None:
        row = await self._db.execute_one(self._q.get_job_ended if ended else self._q.get_job, {"rid": rid})
        return open_job_row(row, self.keyring) if row else None

    async def _status_of(self, rid: UUID) -> JobStatus | None:
        row = await self._db.execute_one(self._q.get_job_status_anywhere, {"rid": rid})
        return JobStatus(row["status"]) if row else None

    # -- managing jobs --------------------------------------------------------------------

    async def cancel_job(self, rid: UUID | str) -> Job:
        """Cancel a queued, scheduled or running job; returns it as archived (CANCELLED).

        JobNotFoundError for an unknown rid, JobAlreadyEndedError for a job that has ended.
        """
        rid = as_uuid(rid)
        rows = await self._db.execute(self._q.cancel_job, {
            "rids": [rid], "reason": "cancelled by request", "channel": self._channel})
        if rows:
            return open_job_row(rows[0], self.keyring)
        status = await self._status_of(rid)
        if status is None:
            raise JobNotFoundError(rid)
        raise JobAlreadyEndedError(rid, status.value)

    async def cancel_jobs(self, rids: Iterable[UUID | str]) -> list[Job]:
        """Cancel many jobs in one statement; returns those that were still queued or running (ended or unknown
        ones are skipped: a bulk cancel races with jobs finishing)."""
        wanted = rids_to_cancel(rids)
        if not wanted:
            return []
        rows = await self._db.execute(self._q.cancel_job, {
            "rids": wanted, "reason": "cancelled by request", "channel": self._channel})
        return [open_job_row(row, self.keyring) for row in rows]

    # -- waiting and events ----------------------------------------------------------------

    async def wait_for_job_finished(self, rid: UUID | str, timeout_seconds: float = 30.0) -> Job:
        """Wait until the job has ended and return it; JobNotFoundError for an unknown rid,
        JobWaitTimeoutError when it is still active after ``timeout_seconds``.

        Woken by the NOTIFY its worker sends when the job ends; the archive is also read every few
        seconds, so a notification missed while the LISTEN connection was down only delays it.
        """
        rid = as_uuid(rid)
        listening = self._listener.has_session
        if listening:
            await self._listener.ensure_started()  # before the first read: an end after it is heard
        woken = asyncio.Event()
        self._listener.waiters.setdefault(str(rid), set()).add(woken)
        try:
            deadline = time.monotonic() + timeout_seconds
            if await self._status_of(rid) is None:
                raise JobNotFoundError(rid)
            recheck = WAIT_RECHECK_SECONDS if listening else SESSIONLESS_RECHECK_SECONDS
            while True:
                job = await self._read(rid, ended=True)
                if job is not None:
                    return job
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    status = await self._status_of(rid)
                    raise JobWaitTimeoutError(rid, timeout_seconds, status.value if status else None)
                try:
                    await asyncio.wait_for(woken.wait(), min(remaining, recheck))
                except asyncio.TimeoutError:
                    pass
                woken.clear()
        finally:
            waiting = self._listener.waiters.get(str(rid), set())
            waiting.discard(woken)
            if not waiting:
                self._listener.waiters.pop(str(rid), None)

    def events(self) -> JobEventStream:
        """Job events as they happen, from LISTEN on the schema's channel:

        ```python
        async with aq.events() as events:   # listening from here on
            async for event in events:
                print(event.kind, event.job.rid, event.job.status)
        ```

        ``async for event in aq.events()`` works too (listening from its first step). Events sent
        while the LISTEN connection was down are not replayed.
        """
        return JobEventStream(self._listener)


# Events a stream holds for a consumer that has not taken them yet; past this, the oldest go.
EVENTS_BUFFERED = 10_000


class JobEventStream:
    """An async iterator of JobEvents; ``async with`` starts listening before the block runs.

    It holds up to ``EVENTS_BUFFERED`` events its consumer has not taken yet; past that
    it drops the oldest, counts them in ``dropped`` and logs a warning: a consumer that
    falls behind loses events, not the process's memory.
    """

    def __init__(self, listener: _Listener) -> None:
        self._listener = listener
        self._queue: asyncio.Queue[JobEvent | None] | None = None
        self.dropped = 0

    async def __aenter__(self) -> JobEventStream:
        await self._start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.close()

    def __aiter__(self) -> JobEventStream:
        return self

    async def __anext__(self) -> JobEvent:
        if self._queue is None:
            await self._start()
        assert self._queue is not None
        event = await self._queue.get()
        if event is None:
            self.close()
            raise StopAsyncIteration
        return event

    async def _start(self) -> None:
        if self._queue is None:
            await self._listener.ensure_started()
            self._queue = asyncio.Queue()
            self._listener.streams.add(self)

    def close(self) -> None:
        """Stop receiving events."""
        self._listener.streams.discard(self)

    def _offer(self, event: JobEvent | None) -> None:
        """From the listener: one more event (None: the end)."""
        assert self._queue is not None
        if event is not None and self._queue.qsize() >= EVENTS_BUFFERED:
            self._queue.get_nowait()
            if not self.dropped:
                log.warning("a job event stream fell %d events behind; dropping its oldest (see dropped)",
                            EVENTS_BUFFERED)
            self.dropped += 1
        self._queue.put_nowait(event)


class _Listener:
    """One LISTEN connection for an AsyncQueuer: wakes its waiters and feeds its event streams."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.has_session = db.has_session
        self.waiters: dict[str, set[asyncio.Event]] = {}  # by rid as text, as NOTIFY sends it
        self.streams: set[JobEventStream] = set()
        self._task: asyncio.Task[None] | None = None
        self._starting = asyncio.Lock()

    async def ensure_started(self) -> None:
        """Listening when this returns (QueuerError, e.g. ConfigurationError behind a transaction pooler, if not)."""
        async with self._starting:
            if self._task is None or self._task.done():
                conn = await self._listen()
                self._task = asyncio.get_running_loop().create_task(self._run(conn))

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        for stream in list(self.streams):
            stream._offer(None)
        self.streams.clear()

    async def _listen(self) -> psycopg.AsyncConnection[Any]:
        conn = await self._db.connect_session_async()
        try:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._db.channel)))
        except psycopg.Error as exc:
            await close_quietly_async(conn)
            raise ConnectionLostError(f"cannot LISTEN on {self._db.config.describe()}: {exc}") from exc
        return conn

    async def _run(self, conn: psycopg.AsyncConnection[Any]) -> None:
        backoff = Backoff(first=0.05, ceiling=1.0)
        try:
            while True:
                try:
                    async for notify in conn.notifies():
                        self._dispatch(notify.payload)
                except psycopg.OperationalError as exc:
                    log.warning("the async LISTEN connection broke (%s); reconnecting", type(exc).__name__)
                await close_quietly_async(conn)
                while True:
                    try:
                        conn = await self._listen()
                        break
                    except QueuerError:
                        await asyncio.sleep(backoff.next())
                backoff.reset()
                for waiting in self.waiters.values():  # a NOTIFY may have been missed: every waiter re-reads
                    for woken in waiting:
                        woken.set()
        finally:
            await close_quietly_async(conn)

    def _dispatch(self, payload: str) -> None:
        try:
            events = parse_payload(payload)
        except (ValueError, TypeError, IndexError):
            log.warning("ignored a notification that is not queuer's: %.80r", payload)
            return
        for event in events:
            if event.kind is EventKind.END and event.rid is not None:
                for woken in self.waiters.get(event.rid, ()):
                    woken.set()
            kind = _JOB_EVENTS.get(event.kind)
            if kind is not None and self.streams:
                job_event = JobEvent(kind, event_job(event))
                for stream in list(self.streams):
                    stream._offer(job_event)


def _our_cursor(conn: psycopg.AsyncConnection[Any]) -> psycopg.AsyncCursor[dict[str, Any]]:
    """A dict-row cursor that reads json as JSON, whatever loaders the connection's owner registered."""
    cur = conn.cursor(row_factory=dict_row)
    cur.adapters.register_loader("json", TolerantJsonLoader)
    cur.adapters.register_loader("jsonb", TolerantJsonbLoader)
    return cur
