"""JobDB: every read and write of ``job`` and ``job_archive``.

Each operation is one statement (COPY plus one NOTIFY for batches), so a job
is never half-written and a claim never selects then updates in two trips.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row, tuple_row

from queuer.database import admin
from queuer.database.connection import Database
from queuer.database.tolerant_json import TolerantJsonbLoader, TolerantJsonLoader, decode_arguments
from queuer.errors import ConnectionLostError, DatabaseUnreachableError, EncryptionError, JobOutcomeUnknownError
from queuer.model.job import Job, JobStatus
from queuer.payload.encryption import Keyring
from queuer.payload.serialization import MAX_ERROR_CHARS, cap_error


@dataclass(slots=True)
class NewJob:
    """A job ready to insert: arguments already serialized to JSON text."""

    rid: UUID
    task_name: str
    parameters: str
    parameters_keyed: str
    options: str | None
    priority: int = 0
    scheduled_at: datetime | None = None
    delay_seconds: float = 0.0
    max_attempts: int = 1
    timeout_seconds: float | None = None
    unique_key: str | None = None
    origin_rid: UUID | None = None
    schedule_count: int = 0
    serial_key: str | None = None
    arguments_enc: bytes | None = None  # encrypted {"p": parameters, "k": parameters_keyed}
    skip_duplicate: bool = False  # with a unique_key: return the existing job instead of failing
    crash_budget: int | None = None  # None: the claiming worker's default


class DuplicateKeyError(Exception):
    """A job with this unique_key is already queued or running."""

    def __init__(self, unique_key: str) -> None:
        super().__init__(unique_key)
        self.unique_key = unique_key


@dataclass(frozen=True)
class ClaimKey:
    """Where a job stands in claim order: highest priority first, then earliest due, then oldest."""

    priority: int
    scheduled_at: datetime
    id: int


@dataclass
class ClaimedJob:
    """One attempt this worker holds: (id, attempt) is its fencing identity."""

    id: int
    rid: UUID
    task_name: str
    parameters: list[Any]
    parameters_keyed: dict[str, Any]
    options: dict[str, Any] | None
    priority: int
    scheduled_at: datetime
    attempt: int
    max_attempts: int
    timeout_seconds: float | None
    schedule_count: int
    created_at: datetime
    origin_rid: UUID | None = None
    arguments_enc: bytes | None = None
    failures: int = 0  # earlier attempts that raised or timed out
    rescues: int = 0  # times put back after a crash: then its start is recorded before it runs

    @property
    def claim_key(self) -> ClaimKey:
        return ClaimKey(self.priority, self.scheduled_at, self.id)

    @property
    def binding(self) -> UUID:
        """What the arguments' encryption is bound to: the first job of a series, or this one."""
        return self.origin_rid or self.rid


@dataclass(frozen=True)
class Outcome:
    """How one attempt ended. status is SUCCEEDED, FAILED, CANCELLED or RETRY."""

    id: int
    attempt: int
    status: str
    results: str | None = None  # JSON text
    error: str | None = None
    retry_delay: float = 0.0
    next_at: datetime | None = None  # a recurring job's next run, from its next-interval function
    results_enc: bytes | None = None

    def __post_init__(self) -> None:
        if self.error is not None and len(self.error) > MAX_ERROR_CHARS:
            # a 2 MB exception message must not become a 2 MB row
            object.__setattr__(self, "error", cap_error(self.error))


# A rate-limited task may start this many seconds' worth of jobs at once.
RATE_BURST_SECONDS = 0.2

_COPY_COLUMNS = (
    "rid, task_name, parameters, parameters_keyed, options, priority, status, scheduled_at,"
    " max_attempts, timeout_seconds, unique_key, origin_rid, schedule_count, serial_key, arguments_enc,"
    " crash_budget"
)


class JobDB:
    def __init__(self, db: Database, keyring: Keyring | None = None) -> None:
        self.db = db
        self.q = db.queries
        self.keyring = keyring

    def _job(self, row: dict[str, Any]) -> Job:
        """A Job from a row, its encrypted payloads opened when a configured key can."""
        job = Job.from_row(row)
        arguments, results = row.get("arguments_enc"), row.get("results_enc")
        if arguments is None and results is None:
            return job
        if self.keyring is None:
            job.encrypted = True
            return job
        try:
            if arguments is not None:
                opened = json.loads(self.keyring.decrypt(arguments, job.origin_rid or job.rid, "arguments"))
                job.parameters, job.parameters_keyed = opened["p"], opened["k"]
            if results is not None:
                job.result = json.loads(self.keyring.decrypt(results, job.rid, "results"))
        except (EncryptionError, ValueError, KeyError):
            job.encrypted = True
        return job

    # -- producing ------------------------------------------------------------

    def _insert_params(self, job: NewJob) -> dict[str, Any]:
        scheduled_at = job.scheduled_at
        return {
            "rid": job.rid,
            "task_name": job.task_name,
            "parameters": job.parameters,
            "parameters_keyed": job.parameters_keyed,
            "options": job.options,
            "priority": job.priority,
            "scheduled_at": scheduled_at,
            "delay_seconds": job.delay_seconds,
            "max_attempts": job.max_attempts,
            "timeout_seconds": job.timeout_seconds,
            "unique_key": job.unique_key,
            "serial_key": job.serial_key,
            "arguments_enc": job.arguments_enc,
            "origin_rid": job.origin_rid,
            "schedule_count": job.schedule_count,
            "crash_budget": job.crash_budget,
            "channel": self.db.channel,
        }

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
                raise JobOutcomeUnknownError(_outcome_unknown(job.rid, 1), job.rid) from exc
        return self._insert_job(job, _our_cursor(conn))

    def _insert_job(self, job: NewJob, cur: psycopg.Cursor[dict[str, Any]]) -> Job:
        row = cur.execute(self.q.insert_job, self._insert_params(job)).fetchone()
        if row is not None:
            return self._job(row)
        # ON CONFLICT on the unique key: another job with it is queued or running.
        assert job.unique_key is not None
        existing = cur.execute(self.q.get_job_by_unique_key, {"unique_key": job.unique_key}).fetchone()
        if not job.skip_duplicate or existing is None:
            raise DuplicateKeyError(job.unique_key)
        return self._job(existing)

    def insert_jobs(
        self, jobs: Iterable[NewJob], conn: psycopg.Connection[Any] | None = None, *, unique_keys: bool = True
    ) -> list[UUID]:
        """Insert many jobs with COPY and one NOTIFY, all in one transaction.

        ``jobs`` may be a generator: rows are built while PostgreSQL ingests the
        previous ones, and an exception while building rolls everything back.
        Pass ``unique_keys=False`` when no job has a unique key (COPY cannot skip
        a conflict, so jobs with keys are inserted row by row instead).
        """
        if conn is None:
            first: list[UUID] = []
            deadline = self.db.deadline()
            try:
                with self.db.connection(deadline) as own:
                    return self.insert_jobs(_noting_first(jobs, first), own, unique_keys=unique_keys)
            except ConnectionLostError as exc:
                # All or nothing: the first job tells which.
                if first and self._find_after_loss(first[0], deadline) is not None:
                    raise JobOutcomeUnknownError(
                        "the connection broke after the batch was committed, before its rids came back: "
                        "every job of it exists; read them with get_jobs", first[0]) from exc
                raise JobOutcomeUnknownError(_outcome_unknown(first[0] if first else None, 2),
                                             first[0] if first else None) from exc
        if unique_keys:
            jobs = list(jobs)
            if any(job.unique_key is not None for job in jobs):
                with conn.transaction():
                    return [self.insert_job(job, conn).rid for job in jobs]
        rids: list[UUID] = []
        task_names: set[str] = set()
        with conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            # now() is the transaction's start: the same value a DEFAULT would give.
            now = cur.execute("SELECT now() AS now").fetchone()["now"]  # type: ignore[index]
            now_text = str(now)
            copy_sql = f"COPY {self.q.schema_quoted}.job ({_COPY_COLUMNS}) FROM STDIN"
            with cur.copy(copy_sql) as copy:
                # COPY's text format, written by hand: several times faster than
                # write_row for rows that are mostly ready-made JSON text.
                lines: list[str] = []
                for job in jobs:
                    rids.append(job.rid)
                    task_names.add(job.task_name)
                    at = job.scheduled_at
                    if at is None:
                        at = now + timedelta(seconds=job.delay_seconds) if job.delay_seconds else now
                    at_text = now_text if at is now else str(at)
                    lines.append("\t".join((
                        str(job.rid),
                        _copy_text(job.task_name),
                        job.parameters if job.parameters == "[]" else _copy_text(job.parameters),
                        job.parameters_keyed if job.parameters_keyed == "{}" else _copy_text(job.parameters_keyed),
                        _copy_text(job.options),
                        str(job.priority),
                        "SCHEDULED" if at > now else "QUEUED",
                        at_text,
                        str(job.max_attempts),
                        _copy_text(job.timeout_seconds),
                        _copy_text(job.unique_key),
                        _copy_text(job.origin_rid),
                        str(job.schedule_count),
                        _copy_text(job.serial_key),
                        "\\N" if job.arguments_enc is None else "\\\\x" + job.arguments_enc.hex(),
                        _copy_text(job.crash_budget),
                    )))
                    if len(lines) >= 1000:
                        copy.write("\n".join(lines) + "\n")
                        lines.clear()
                if lines:
                    copy.write("\n".join(lines) + "\n")
            if not rids:
                return rids
            cur.execute(self.q.notify_inserted_tasks, {"channel": self.db.channel, "task_names": sorted(task_names)})
        return rids

    # -- consuming ------------------------------------------------------------

    def claim(
        self,
        worker_rid: UUID,
        task_names: Sequence[str],
        limit: int,
        default_max_attempts: int,
        default_timeout: float | None,
        default_crash_budget: int,
        conn: psycopg.Connection[Any] | None = None,
        suspects: bool = False,
        after: ClaimKey | None = None,
    ) -> list[ClaimedJob]:
        """Claim up to ``limit`` jobs of these tasks for a new attempt each, in claim order.

        ``suspects=True`` claims only suspects (jobs to run alone), else only the others.
        ``after``: start after this job in claim order (see claim_jobs_after) instead of at the start.
        """
        if conn is None:
            with self.db.connection() as hot:
                return self.claim(worker_rid, task_names, limit, default_max_attempts, default_timeout,
                                  default_crash_budget, hot, suspects, after)
        params = {
            "worker_rid": worker_rid,
            "task_names": text_array(tuple(task_names)),
            "limit": limit,
            "default_max_attempts": default_max_attempts,
            "default_timeout": default_timeout,
            "default_crash_budget": default_crash_budget,
            "suspects": suspects,
        }
        statement = self.q.claim_jobs
        if after is not None:
            params.update(after_priority=after.priority, after_at=after.scheduled_at, after_id=after.id)
            statement = self.q.claim_jobs_after
        cur = conn.cursor(row_factory=tuple_row)
        rows = cur.execute(statement, params, prepare=self.db.prepare).fetchall()
        claimed = []
        for (id_, rid, task_name, params, params_keyed, options, priority, scheduled_at, attempt,
             max_attempts, timeout, schedule_count, created_at, origin_rid, arguments_enc, failures, rescues) in rows:
            claimed.append(
                ClaimedJob(id_, rid, task_name,
                           [] if params == "[]" else decode_arguments(params),
                           {} if params_keyed == "{}" else decode_arguments(params_keyed),
                           options, priority, scheduled_at,
                           attempt, max_attempts, timeout, schedule_count, created_at, origin_rid, arguments_enc,
                           failures, rescues)
            )
        # UPDATE ... RETURNING has no order: restore claim order.
        claimed.sort(key=lambda c: (-c.priority, c.scheduled_at, c.id))
        return claimed

    def claim_limited(
        self,
        worker_rid: UUID,
        task_name: str,
        room: int,
        concurrency_limit: int | None,
        requests_per_second: float | None,
        default_max_attempts: int,
        default_timeout: float | None,
        default_crash_budget: int,
    ) -> tuple[list[ClaimedJob], float | None]:
        """Claim jobs of one limited task; also return seconds until a rate token is due.

        One transaction under the task's advisory lock: count what runs, take
        rate tokens, claim at most what both allow.
        """
        with self.db.connection() as conn:
            with conn.transaction():
                conn.execute(self.q.lock_task_limit, {"key": f"{self.db.schema}.{task_name}"})
                allowed = room
                tokens = None
                if concurrency_limit is not None:
                    row = conn.execute(self.q.count_running_of_task, {"task_name": task_name}).fetchone()
                    allowed = min(allowed, concurrency_limit - int(row["running"]))  # type: ignore[index]
                if requests_per_second is not None:
                    burst = max(1.0, requests_per_second * RATE_BURST_SECONDS)
                    row = conn.execute(
                        self.q.refill_rate_tokens,
                        {"task_name": task_name, "burst": burst, "rate": requests_per_second},
                    ).fetchone()
                    assert row is not None  # the upsert returns its row
                    tokens = float(row["tokens"])
                    allowed = min(allowed, int(tokens))
                if allowed <= 0:
                    claimed: list[ClaimedJob] = []
                else:
                    claimed = self.claim(worker_rid, [task_name], allowed, default_max_attempts, default_timeout,
                                         default_crash_budget, conn)
                if tokens is not None and claimed:
                    conn.execute(self.q.spend_rate_tokens, {"task_name": task_name, "spent": len(claimed)})
        wait = None
        if tokens is not None and requests_per_second:
            left = tokens - len(claimed)
            wait = 0.0 if left >= 1 else (1.0 - left) / requests_per_second
        return claimed, wait

    def has_due_jobs(self, task_names: Sequence[str]) -> bool:
        row = self.db.execute_one(self.q.has_due_jobs, {"task_names": list(task_names)})
        return bool(row and row["due"])

    def seconds_until_next_due(self, task_names: Sequence[str]) -> float | None:
        row = self.db.execute_one(self.q.next_due_in, {"task_names": list(task_names)})
        value = row["wait_seconds"] if row else None
        return None if value is None else max(0.0, float(value))

    def record_outcomes(self, worker_rid: UUID, outcomes: Sequence[Outcome]) -> set[int]:
        """Apply a batch of outcomes; return the job ids whose outcome was applied."""
        outcomes = sorted(outcomes, key=lambda o: o.id)  # one lock order for every writer
        batch = json.dumps([
            [o.id, o.attempt, o.status, o.results, o.error and _storable_text(o.error), o.retry_delay,
             o.next_at.isoformat() if o.next_at else None,
             base64.b64encode(o.results_enc).decode() if o.results_enc else None]
            for o in outcomes
        ], separators=(",", ":"))
        params = {"outcomes": batch, "worker_rid": worker_rid, "channel": self.db.channel}
        with self.db.connection() as conn:
            row = conn.execute(self.q.record_outcomes, params, prepare=self.db.prepare).fetchone()
        return set(row["applied_ids"] if row else [])

    def release(self, worker_rid: UUID, attempts: Iterable[tuple[int, int]]) -> int:
        pairs = sorted(attempts)
        if not pairs:
            return 0
        params = {
            "ids": [p[0] for p in pairs],
            "attempts": [p[1] for p in pairs],
            "worker_rid": worker_rid,
            "channel": self.db.channel,
        }
        with self.db.connection() as conn:
            row = conn.execute(self.q.release_jobs, params).fetchone()
        return int(row["released"]) if row else 0

    def confirm_start(self, worker_rid: UUID, job_id: int, attempt: int, alone: bool) -> bool:
        """Record that a rescued job starts now; False when this worker no longer holds it."""
        with self.db.connection() as conn:
            row = conn.execute(self.q.confirm_start, {
                "id": job_id, "attempt": attempt, "worker_rid": worker_rid, "alone": alone}).fetchone()
        return row is not None

    def requeue_abandoned(self, worker_rid: UUID, attempts: Iterable[tuple[int, int]]) -> int:
        """Put back attempts this worker gives up on while they run (charged a crash each)."""
        pairs = sorted(attempts)
        if not pairs:
            return 0
        row = self.db.execute_one(self.q.requeue_abandoned, {
            "ids": [p[0] for p in pairs], "attempts": [p[1] for p in pairs],
            "worker_rid": worker_rid, "channel": self.db.channel,
        })
        return int(row["requeued"]) if row else 0

    def held_by(self, worker_rid: UUID) -> list[tuple[int, int]]:
        with self.db.connection() as conn:
            rows = conn.execute(self.q.running_jobs_of_worker, {"worker_rid": worker_rid}).fetchall()
        return [(r["id"], r["attempts"]) for r in rows]

    def maintain_archive(self, partition_seconds: float, keep_seconds: float | None) -> tuple[int, int]:
        """Archive partitions ahead made, those older than ``keep_seconds`` dropped: (created, dropped)."""
        with self.db.connection() as conn:
            return admin.maintain_archive(conn, self.db.schema, partition_seconds, keep_seconds)

    def prune_archive(self, older_than_seconds: float, batch_size: int) -> int:
        """Delete one batch of archived jobs that ended longer ago than this; return how many."""
        with self.db.connection() as conn:
            return admin.prune_archive(conn, self.db.schema, older_than_seconds, batch_size, once=True)

    def rescue_orphans(self) -> tuple[int, int]:
        row = self.db.execute_one(self.q.rescue_orphaned_jobs, {"channel": self.db.channel})
        return (int(row["requeued"]), int(row["failed"])) if row else (0, 0)

    # -- managing -------------------------------------------------------------

    def cancel(self, rids: list[UUID], reason: str) -> list[Job]:
        """Cancel those of ``rids`` still queued or running; return them as archived."""
        rows = self.db.execute(self.q.cancel_job, {"rids": rids, "reason": reason, "channel": self.db.channel})
        return [self._job(row) for row in rows]

    def status_of(self, rid: UUID) -> JobStatus | None:
        row = self.db.execute_one(self.q.get_job_status_anywhere, {"rid": rid})
        return JobStatus(row["status"]) if row else None

    def _find_after_loss(self, rid: UUID, deadline: float) -> Job | None:
        """After a connection broke mid-insert: the job, if it was committed and the server answers
        within the call's time (``deadline``); None when that cannot be known."""
        try:
            with self.db.connection(deadline) as conn:
                cur = conn.cursor(row_factory=dict_row)
                row = cur.execute(self.q.get_job, {"rid": rid}).fetchone() or \
                    cur.execute(self.q.get_job_ended, {"rid": rid}).fetchone()
        except DatabaseUnreachableError:
            return None
        return self._job(row) if row else None

    def get_job(self, rid: UUID) -> Job | None:
        row = self.db.execute_one(self.q.get_job, {"rid": rid})
        return self._job(row) if row else None

    def get_job_ended(self, rid: UUID) -> Job | None:
        row = self.db.execute_one(self.q.get_job_ended, {"rid": rid})
        return self._job(row) if row else None

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
        return [self._job(r) for r in rows]

    def get_jobs_newest(
        self, *, ended: bool, before_id: int | None, limit: int, worker_rid: UUID | None = None,
    ) -> list[Job]:
        """Newest first, ids below ``before_id`` (queuerPy's ``last_id`` paging)."""
        rows = self.db.execute(
            self.q.get_jobs_ended_newest if ended else self.q.get_jobs_newest,
            {"before_id": before_id, "limit": limit, "worker_rid": worker_rid},
        )
        return [self._job(r) for r in rows]


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(value: object) -> str:
    """One field in COPY's text format: \\N for NULL, special characters escaped."""
    if value is None:
        return "\\N"
    text = str(value)
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        return text.translate(_COPY_ESCAPES)
    return text


def _outcome_unknown(rid: UUID | None, count: int) -> str:
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


@lru_cache(maxsize=64)
def text_array(names: tuple[str, ...]) -> str:
    """A text[] literal: one cheap text parameter instead of a list to adapt at every claim."""
    quoted = ('"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"' for name in names)
    return "{" + ",".join(quoted) + "}"


def _storable_text(text: str) -> str:
    """Text PostgreSQL can store: an error message may hold a NUL or a lone surrogate."""
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
