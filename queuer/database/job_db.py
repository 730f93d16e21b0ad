"""JobDB: the producer's and the reader's side of ``job`` and ``job_archive``:
adding jobs, reading them, cancelling them.

Each operation is one statement (COPY plus one NOTIFY for batches), so a job
is never half-written. The worker's side (claims, outcomes) is ``AttemptDB``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from queuer.database.connection import Database
from queuer.database.copy_format import copy_chunks
from queuer.database.tolerant_json import TolerantJsonbLoader, TolerantJsonLoader
from queuer.errors import ConnectionLostError, DatabaseUnreachableError, EncryptionError, JobOutcomeUnknownError
from queuer.model.job import Job, JobStatus
from queuer.model.rows import NewJob
from queuer.payload.encryption import Keyring

# A new connection to a host that does not answer fails at its first SYN retransmission, a second
# in: with less time left, a lookup after a lost insert would outlast the call.
LOOKUP_MIN_SECONDS = 1.0


class DuplicateKeyError(Exception):
    """A job with this unique_key is already queued or running."""

    def __init__(self, unique_key: str) -> None:
        super().__init__(unique_key)
        self.unique_key = unique_key


class JobDB:
    def __init__(self, db: Database, keyring: Keyring | None = None) -> None:
        self.db = db
        self.q = db.queries
        self.keyring = keyring

    def open_row(self, row: dict[str, Any]) -> Job:
        """A Job from a row, its encrypted payloads opened when a configured key can."""
        return open_job_row(row, self.keyring)

    # -- producing ------------------------------------------------------------

    def _insert_params(self, job: NewJob) -> dict[str, Any]:
        return insert_params(job, self.db.channel)

    def insert_job(self, job: NewJob, conn: psycopg.Connection[Any] | None = None) -> Job:
        """Insert one job (and NOTIFY) in one statement; on ``conn`` when given (transactional)."""
        if conn is None:
            deadline = self.db.deadline()
            try:
                with self.db.connection(deadline) as own:
                    return self._insert_job(job, own.cursor(row_factory=dict_row))
            except ConnectionLostError as exc:
                found = self._find_after_loss(job.rid, deadline)
                if found is not None:
                    return found
                raise JobOutcomeUnknownError(outcome_unknown(job.rid, 1), job.rid) from exc
        return self._insert_job(job, _our_cursor(conn))

    def _insert_job(self, job: NewJob, cur: psycopg.Cursor[dict[str, Any]]) -> Job:
        statement = self.q.insert_job_replace if job.replace_duplicate else self.q.insert_job
        row = cur.execute(statement, self._insert_params(job)).fetchone()
        if row is not None:
            return self.open_row(row)
        # A duplicate: a job with the key is queued or running (and, with "replace", running),
        # or one ended within unique_for.
        assert job.unique_key is not None
        existing = cur.execute(self.q.get_job_by_unique_key, {"unique_key": job.unique_key}).fetchone()
        if existing is None and job.unique_for_seconds is not None:
            existing = cur.execute(self.q.get_job_ended_by_unique_key, {
                "unique_key": job.unique_key, "unique_for": job.unique_for_seconds}).fetchone()
        if not (job.skip_duplicate or job.replace_duplicate) or existing is None:
            raise DuplicateKeyError(job.unique_key)
        return self.open_row(existing)

    def insert_jobs(
        self, jobs: Iterable[NewJob], conn: psycopg.Connection[Any] | None = None, *, unique_keys: bool = True,
        then: Callable[[psycopg.Cursor[dict[str, Any]], list[UUID]], None] | None = None,
    ) -> list[UUID]:
        """Insert many jobs with COPY and one NOTIFY, all in one transaction.

        ``jobs`` may be a generator: rows are built while PostgreSQL ingests the
        previous ones, and an exception while building rolls everything back.
        Pass ``unique_keys=False`` when no job has a unique key (COPY cannot skip
        a conflict, so jobs with keys are inserted row by row instead).
        ``then(cursor, rids)`` runs in the same transaction once the rows are in
        (a workflow's dependencies).
        """
        if conn is None:
            first: list[UUID] = []
            deadline = self.db.deadline()
            try:
                with self.db.connection(deadline) as own:
                    return self.insert_jobs(_noting_first(jobs, first), own, unique_keys=unique_keys, then=then)
            except ConnectionLostError as exc:
                # All or nothing: the first job tells which.
                if first and self._find_after_loss(first[0], deadline) is not None:
                    raise JobOutcomeUnknownError(
                        "the connection broke after the batch was committed, before its rids came back: "
                        "every job of it exists; read them with get_jobs", first[0]) from exc
                raise JobOutcomeUnknownError(outcome_unknown(first[0] if first else None, 2),
                                             first[0] if first else None) from exc
        if unique_keys:
            jobs = list(jobs)
            if any(job.unique_key is not None for job in jobs):
                with conn.transaction():
                    return [self.insert_job(job, conn).rid for job in jobs]
        rids: list[UUID] = []
        task_names: set[str] = set()
        unkeyed: set[str] = set()
        with conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            now = cur.execute(self.q.transaction_start).fetchone()["now"]  # type: ignore[index]
            with cur.copy(self.q.copy_jobs) as copy:
                for chunk in copy_chunks(jobs, now, rids, task_names, unkeyed):
                    copy.write(chunk)
            if not rids:
                return rids
            if then is not None:
                then(cur, rids)
            notified = cur.execute(self.q.notify_inserted_tasks, {
                "channel": self.db.channel, "task_names": sorted(task_names), "unkeyed": sorted(unkeyed)}).fetchone()
            if notified and notified["grouped"]:  # jobs of a task claimed by group always have a key
                cur.execute(self.q.key_grouped_jobs, {"rids": rids, "task_names": notified["grouped"]})
        return rids

    # -- managing -------------------------------------------------------------

    def cancel(self, rids: list[UUID], reason: str) -> list[Job]:
        """Cancel those of ``rids`` still queued or running; return them as archived."""
        rows = self.db.execute(self.q.cancel_job, {"rids": rids, "reason": reason, "channel": self.db.channel})
        return [self.open_row(row) for row in rows]

    def count_by_task_and_status(self) -> list[tuple[str, str, int]]:
        return [(r["task_name"], r["status"], r["n"]) for r in self.db.execute(self.q.count_jobs_by_task_and_status)]

    def status_of(self, rid: UUID) -> JobStatus | None:
        row = self.db.execute_one(self.q.get_job_status_anywhere, {"rid": rid})
        return JobStatus(row["status"]) if row else None

    def _find_after_loss(self, rid: UUID, deadline: float) -> Job | None:
        """After a connection broke mid-insert: the job, if it was committed and the server answers
        within the call's time (``deadline``); None when that cannot be known."""
        if deadline - time.monotonic() < LOOKUP_MIN_SECONDS:
            return None  # a host that stopped answering takes longer than that to give up on
        try:
            with self.db.connection(deadline) as conn:
                cur = conn.cursor(row_factory=dict_row)
                row = cur.execute(self.q.get_job, {"rid": rid}).fetchone() or \
                    cur.execute(self.q.get_job_ended, {"rid": rid}).fetchone()
        except DatabaseUnreachableError:
            return None
        return self.open_row(row) if row else None

    def get_job(self, rid: UUID) -> Job | None:
        row = self.db.execute_one(self.q.get_job, {"rid": rid})
        return self.open_row(row) if row else None

    def get_job_ended(self, rid: UUID) -> Job | None:
        row = self.db.execute_one(self.q.get_job_ended, {"rid": rid})
        return self.open_row(row) if row else None

    def get_jobs(
        self,
        *,
        ended: bool = False,
        status: JobStatus | None = None,
        task_name: str | None = None,
        worker_rid: UUID | None = None,
        limit: int = 100,
        offset: int = 0,
        after_id: int | None = None,
    ) -> list[Job]:
        rows = self.db.execute(
            self.q.get_jobs_ended if ended else self.q.get_jobs,
            {
                "status": status.value if status else None,
                "task_name": task_name,
                "worker_rid": worker_rid,
                "limit": limit,
                "offset": offset,
                "after_id": after_id,
            },
        )
        return [self.open_row(r) for r in rows]

    def get_jobs_newest(
        self, *, ended: bool, before_id: int | None, limit: int, worker_rid: UUID | None = None,
    ) -> list[Job]:
        """Newest first, ids below ``before_id`` (queuerPy's ``last_id`` paging)."""
        rows = self.db.execute(
            self.q.get_jobs_ended_newest if ended else self.q.get_jobs_newest,
            {"before_id": before_id, "limit": limit, "worker_rid": worker_rid},
        )
        return [self.open_row(r) for r in rows]


def open_job_row(row: dict[str, Any], keyring: Keyring | None) -> Job:
    """A Job from a row, its encrypted payloads opened when ``keyring`` can (the sync and async clients' reader)."""
    job = Job.from_row(row)
    arguments, results = row.get("arguments_enc"), row.get("results_enc")
    if arguments is None and results is None:
        return job
    if keyring is None:
        job.encrypted = True
        return job
    try:
        if arguments is not None:
            job.parameters, job.parameters_keyed = keyring.open_arguments(arguments, job.origin_rid or job.rid)
        if results is not None:
            job.result = keyring.open_results(results, job.rid)
    except EncryptionError:
        job.encrypted = True
    return job


def insert_params(job: NewJob, channel: str) -> dict[str, Any]:
    """The parameters of ``insert_job`` / ``insert_job_replace`` for one job (NOTIFY on ``channel``)."""
    return {
        "rid": job.rid,
        "task_name": job.task_name,
        "parameters": job.parameters,
        "parameters_keyed": job.parameters_keyed,
        "options": job.options,
        "priority": job.priority,
        "scheduled_at": job.scheduled_at,
        "delay_seconds": job.delay_seconds,
        "max_attempts": job.max_attempts,
        "timeout_seconds": job.timeout_seconds,
        "unique_key": job.unique_key,
        "serial_key": job.serial_key,
        "group_key": job.group_key,
        "arguments_enc": job.arguments_enc,
        "origin_rid": job.origin_rid,
        "schedule_count": job.schedule_count,
        "crash_budget": job.crash_budget,
        "unique_for": job.unique_for_seconds,
        "channel": channel,
    }


def outcome_unknown(rid: UUID | None, count: int) -> str:
    what = f"job {rid}" if count == 1 else "the batch"
    return (f"the connection broke while {what} was being added and the server could not be asked "
            f"afterwards: it may or may not exist. Check with get_job({rid!s}) once the database is back, "
            "or give jobs a unique_key (Options(unique_key=..., on_duplicate='skip')) so that adding them "
            "again is safe")


def _noting_first(jobs: Iterable[NewJob], first: list[UUID]) -> Iterator[NewJob]:
    for job in jobs:
        if not first:
            first.append(job.rid)
        yield job


def _our_cursor(conn: psycopg.Connection[Any]) -> psycopg.Cursor[dict[str, Any]]:
    """A dict-row cursor that reads json as JSON, whatever loaders the connection's owner registered.

    A web framework's connection (Django registers a text loader for jsonb) must
    give back the same complete Job as ours.
    """
    cur = conn.cursor(row_factory=dict_row)
    cur.adapters.register_loader("json", TolerantJsonLoader)
    cur.adapters.register_loader("jsonb", TolerantJsonbLoader)
    return cur
