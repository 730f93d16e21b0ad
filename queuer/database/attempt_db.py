"""AttemptDB: the worker's side of ``job``: claims, outcomes, releases and rescues.

Each operation is one statement, except a limited task's claim: one transaction
under the task's advisory lock (count what runs, take rate tokens, claim).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row, tuple_row

from queuer.database import admin
from queuer.database.connection import Database
from queuer.database.tolerant_json import decode_arguments
from queuer.model.rows import ClaimedJob, ClaimKey, Outcome
from queuer.model.task import Task

# A rate-limited task may start this many seconds' worth of jobs at once.
RATE_BURST_SECONDS = 0.2


class AttemptDB:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.q = db.queries

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

        ``suspects=True`` claims only suspects (jobs to run in a process of their own), else only the others.
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
        return self._claimed(rows)

    @staticmethod
    def _claimed(rows: Sequence[tuple[Any, ...]]) -> list[ClaimedJob]:
        """The claim's rows as ClaimedJobs, in claim order (UPDATE ... RETURNING has none)."""
        claimed = []
        for (id_, rid, task_name, params, params_keyed, options, priority, scheduled_at, attempt, max_attempts,
             timeout, schedule_count, created_at, origin_rid, arguments_enc, failures, rescues, workflow_id,
             depends_on, steps, snoozes, group_key) in rows:
            claimed.append(
                ClaimedJob(id_, rid, task_name,
                           [] if params == "[]" else decode_arguments(params),
                           {} if params_keyed == "{}" else decode_arguments(params_keyed),
                           options, priority, scheduled_at,
                           attempt, max_attempts, timeout, schedule_count, created_at, origin_rid, arguments_enc,
                           failures, rescues, workflow_id, depends_on, steps, snoozes, group_key)
            )
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
        suspects: bool = False,
    ) -> tuple[list[ClaimedJob], float | None]:
        """Claim jobs of one limited task (only suspects, or only the others); also return seconds until a rate
        token is due.

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
                                         default_crash_budget, conn, suspects)
                if tokens is not None and claimed:
                    conn.execute(self.q.spend_rate_tokens, {"task_name": task_name, "spent": len(claimed)})
        wait = None
        if tokens is not None and requests_per_second:
            left = tokens - len(claimed)
            wait = 0.0 if left >= 1 else (1.0 - left) / requests_per_second
        return claimed, wait

    def claim_grouped(
        self,
        worker_rid: UUID,
        task: Task,
        room: int,
        default_max_attempts: int,
        default_timeout: float | None,
        default_crash_budget: int,
        suspects: bool = False,
    ) -> list[ClaimedJob]:
        """Claim jobs of a task claimed by group (round-robin between groups, limits per group); only suspects,
        or only the others.

        With a limit per group, under the task's advisory lock (one transaction), so that two workers
        cannot both see room for the same group.
        """
        params = {
            "task_name": task.name, "limit": room, "group_limit": task.group_concurrency_limit,
            "group_rate": task.group_requests_per_second,
            # the claim's own conditions (see _claimable)
            "worker_rid": worker_rid, "task_names": text_array((task.name,)), "suspects": suspects,
            "default_max_attempts": default_max_attempts, "default_timeout": default_timeout,
            "default_crash_budget": default_crash_budget,
        }
        with self.db.connection() as conn:
            cur = conn.cursor(row_factory=tuple_row)
            # One round trip for the transaction, the lock and the claim.
            with conn.pipeline(), conn.transaction():
                cur.execute(self.q.lock_task_limit, {"key": f"{self.db.schema}.{task.name}"}, prepare=self.db.prepare)
                cur.execute(self.q.claim_grouped, params, prepare=self.db.prepare)
            rows = cur.fetchall()
        return self._claimed(rows)

    def has_due_jobs(self, task_names: Sequence[str]) -> bool:
        row = self.db.execute_one(self.q.has_due_jobs, {"task_names": list(task_names)})
        return bool(row and row["due"])

    def suspects_due(self, task_names: Sequence[str]) -> tuple[set[str], float | None]:
        """The tasks of these with suspects due now, and seconds until the next suspect not due yet (None: none)."""
        row = self.db.execute_one(self.q.suspects_due, {"task_names": list(task_names)})
        if row is None:
            return set(), None
        return set(row["due"]), None if row["next_in"] is None else max(0.0, float(row["next_in"]))

    def seconds_until_next_due(self, task_names: Sequence[str]) -> float | None:
        row = self.db.execute_one(self.q.next_due_in, {"task_names": list(task_names)})
        value = row["wait_seconds"] if row else None
        return None if value is None else max(0.0, float(value))

    def record_outcomes(self, worker_rid: UUID, outcomes: Sequence[Outcome]) -> set[int]:
        """Apply a batch of outcomes; return the job ids whose outcome was applied."""
        params = {"outcomes": _outcomes_json(outcomes), "worker_rid": worker_rid, "channel": self.db.channel}
        with self.db.connection() as conn:
            row = conn.execute(self.q.record_outcomes, params, prepare=self.db.prepare).fetchone()
        return set(row["applied_ids"] if row else [])

    def complete_in_tx(self, conn: psycopg.Connection[Any], worker_rid: UUID, outcome: Outcome) -> bool:
        """Write ``outcome`` in the caller's transaction; False (and that transaction aborted) when this attempt
        no longer holds its job."""
        cur = conn.cursor(row_factory=dict_row)
        row = cur.execute(self.q.record_outcomes, {
            "outcomes": _outcomes_json([outcome]), "worker_rid": worker_rid, "channel": self.db.channel}).fetchone()
        if row is not None and outcome.id in row["applied_ids"]:
            return True
        try:
            cur.execute(self.q.refuse_completion)
        except psycopg.errors.RaiseException:
            pass  # the point: the transaction is aborted now
        return False

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

    def confirm_start(self, worker_rid: UUID, job_id: int, attempt: int) -> bool:
        """Record that a rescued job starts now; False when this worker no longer holds it."""
        with self.db.connection() as conn:
            row = conn.execute(self.q.confirm_start, {
                "id": job_id, "attempt": attempt, "worker_rid": worker_rid}).fetchone()
        return row is not None

    def charge_crash(self, worker_rid: UUID, job_id: int, attempt: int, cause: str) -> tuple[int, int]:
        """Charge a crash to a job whose attempt crashed the process it ran in alone: (requeued, failed),
        (0, 0) when this attempt no longer holds the job."""
        row = self.db.execute_one(self.q.charge_crash, {
            "id": job_id, "attempt": attempt, "worker_rid": worker_rid, "cause": cause, "channel": self.db.channel})
        return (int(row["requeued"]), int(row["failed"])) if row else (0, 0)

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


def _outcomes_json(outcomes: Sequence[Outcome]) -> str:
    """A batch as record_outcomes takes it: one JSON array, sorted by job id (one lock order for every writer)."""
    return json.dumps([
        [o.id, o.attempt, o.status, o.results, o.error and _storable_text(o.error), o.retry_delay,
         o.next_at.isoformat() if o.next_at else None,
         base64.b64encode(o.results_enc).decode() if o.results_enc else None]
        for o in sorted(outcomes, key=lambda o: o.id)
    ], separators=(",", ":"))


@lru_cache(maxsize=64)
def text_array(names: tuple[str, ...]) -> str:
    """A text[] literal: one cheap text parameter instead of a list to adapt at every claim."""
    quoted = ('"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"' for name in names)
    return "{" + ",".join(quoted) + "}"


def _storable_text(text: str) -> str:
    """Text PostgreSQL can store: an error message may hold a NUL or a lone surrogate."""
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
