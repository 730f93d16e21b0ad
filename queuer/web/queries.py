"""The SQL reads behind the pages.

Each page reads in one short read-only transaction. The Queuer's pooled
connections carry planner settings tuned for the claim (no sorts, no
sequential scans); these reads aggregate and sort, so the transaction puts
the planner's defaults back, and bounds every statement in time.

Costs, with a large archive: the overview reads only archive rows that ended
in the last hour (the ended_at index) plus the live queue; a jobs page reads
one page by keyset, (ended_at, id) in the archive and id in the queue, and
never counts the archive (its size is the planner's estimate).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import psycopg

from queuer.database.connection import Database
from queuer.database.tolerant_json import TolerantJsonbLoader, TolerantJsonLoader
from queuer.database.worker_db import liveness_lock_space
from queuer.payload.serialization import Undecodable
from queuer.web.params import Cursor, JobFilter

# The pool's claim-tuned settings off again, for this transaction only.
READ_SETTINGS = (
    "SET TRANSACTION READ ONLY; SET LOCAL enable_sort = on; SET LOCAL enable_bitmapscan = on;"
    " SET LOCAL enable_seqscan = on; SET LOCAL enable_hashjoin = on; SET LOCAL enable_mergejoin = on;"
    " SET LOCAL statement_timeout = '10s'"
)

STATUS_ORDER = ("QUEUED", "SCHEDULED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED")
MAX_TASK_ROWS = 500

ACTIVE_COUNTS = """
SELECT task_name, status, count(*) AS n
FROM {schema}.job
GROUP BY task_name, status
"""

ENDED_COUNTS = """
SELECT task_name, status, count(*) AS n
FROM {schema}.job_archive
WHERE ended_at >= now() - interval '1 hour'
GROUP BY task_name, status
"""

# The last hour in minutes 0..59 (59 is the current one), grouped so that Python
# gets a few hundred rows whatever the traffic: per archived job of the hour, the
# minute it ended in and its outcome, and for every job that waited in the hour
# (was due and not started) the minute it became due and the minute it left (it
# started, or ended unstarted; NULL while it still waits). A job waited from
# greatest(created_at, scheduled_at). Only archive rows that ended within the
# hour can have waited in it, so the ended_at index bounds the work. (date_part,
# not extract: extract returns numeric, several times slower here.)
MINUTE_GROUPS = """
WITH win AS MATERIALIZED (
    SELECT date_part('epoch', date_trunc('minute', now()) - interval '59 minutes') AS start,
           date_part('epoch', now()) AS now
), spans AS (
    SELECT a.status,
           date_part('epoch', a.ended_at) AS ended,
           date_part('epoch', greatest(a.created_at, a.scheduled_at)) AS due,
           date_part('epoch', coalesce(a.started_at, a.ended_at)) AS left_at
    FROM {schema}.job_archive AS a
    WHERE a.ended_at >= to_timestamp((SELECT start FROM win))
    UNION ALL
    SELECT NULL, NULL,
           date_part('epoch', greatest(j.created_at, j.scheduled_at)),
           CASE WHEN j.status = 'RUNNING' THEN date_part('epoch', j.started_at) END
    FROM {schema}.job AS j
), placed AS (
    SELECT s.status,
           floor((s.ended - w.start) / 60)::int AS ended_in,
           s.due <= w.now AND (s.left_at IS NULL OR (s.left_at > w.start AND s.left_at >= s.due)) AS waited,
           floor((greatest(s.due, w.start) - w.start) / 60)::int AS due_in,
           floor((s.left_at - w.start) / 60)::int AS left_in
    FROM spans AS s, win AS w
)
SELECT status, ended_in,
       CASE WHEN waited THEN due_in END AS due_in,
       CASE WHEN waited THEN left_in END AS left_in,
       count(*) AS n
FROM placed
WHERE status IS NOT NULL OR waited
GROUP BY 1, 2, 3, 4
"""

MINUTES_START = "SELECT date_trunc('minute', now()) - interval '59 minutes' AS start"

# Workers that can run jobs, and those that stopped or died in the last 15 minutes.
# A session worker is alive while its liveness lock is held (see mark_dead_workers).
WORKERS = """
SELECT w.rid, w.name, w.host, w.pid, w.max_concurrency, w.status, w.liveness, w.stop_requested,
       w.heartbeat_at, w.created_at,
       extract(epoch FROM now() - w.heartbeat_at)::double precision AS silent_seconds,
       (SELECT count(*) FROM {schema}.job AS j
        WHERE j.worker_rid = w.rid AND j.status = 'RUNNING') AS running,
       w.liveness = 'session' AND EXISTS (
           SELECT 1 FROM pg_locks AS l
           WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
             AND l.classid = %(lock_space)s::bigint::oid
             AND l.objid = (w.id %% 2147483648)::oid) AS session_held
FROM {schema}.worker AS w
WHERE w.status IN ('RUNNING', 'STOPPING')
   OR (w.status IN ('STOPPED', 'DEAD') AND w.updated_at > now() - interval '15 minutes')
ORDER BY w.status IN ('STOPPED', 'DEAD'), w.name, w.id
LIMIT 200
"""

# The planner's estimate of the archive's size; before the first ANALYZE, a count
# that stops at SMALL_COUNT_LIMIT rows.
# The archive is partitioned: its estimate is the sum of its partitions' (a parent's reltuples is
# never kept); -1 (count instead) while those that hold anything were never analyzed.
ARCHIVE_ESTIMATE = """
SELECT CASE WHEN sum(greatest(c.reltuples, 0)) = 0 AND bool_or(c.reltuples < 0) THEN -1
            ELSE sum(greatest(c.reltuples, 0)) END::bigint AS estimate
FROM pg_class AS c
WHERE c.oid = to_regclass(%(table)s) AND c.relkind <> 'p'
   OR c.oid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = to_regclass(%(table)s))
"""
SMALL_COUNT_LIMIT = 10_000
ARCHIVE_SMALL_COUNT = """
SELECT count(*) AS n FROM (SELECT 1 FROM {schema}.job_archive LIMIT %(limit)s) AS few
"""

DB_NOW = "SELECT now() AS now"

LIST_COLUMNS = (
    "rid, task_name, status, priority, attempts, max_attempts, created_at, scheduled_at, started_at,"
    " worker_rid, left(error, 300) AS error, id,"
    # Sizes read from the values' headers, not the values: see SUSPECT_SIZE. (json's text length is
    # in its header even when compressed; a compressed jsonb has a stored size that may be small.)
    " octet_length(parameters::text) + octet_length(parameters_keyed::text) AS arguments_size,"
    " CASE WHEN pg_column_compression(results) IS NOT NULL THEN 2147483647"
    " ELSE pg_column_size(results) END AS result_size"
)

# Python's JSON reader refuses only values nested some 1,000 levels deep or holding an integer of
# more than 4,300 digits: no value shorter than this can be one, so a list decodes (once per job,
# remembered) only the arguments and results of jobs whose stored size reaches it.
SUSPECT_SIZE = 1000
PAYLOADS = """
SELECT rid, parameters, parameters_keyed, results FROM {schema}.job WHERE rid = ANY(%(rids)s)
UNION ALL
SELECT rid, parameters, parameters_keyed, results FROM {schema}.job_archive WHERE rid = ANY(%(rids)s)
"""

JOB_ACTIVE = "SELECT *, NULL::timestamptz AS ended_at FROM {schema}.job WHERE rid = %(rid)s"
JOB_ENDED = "SELECT * FROM {schema}.job_archive WHERE rid = %(rid)s"
WORKER_BY_RID = "SELECT rid, name, host, pid, status FROM {schema}.worker WHERE rid = %(rid)s"


@dataclass
class TaskCounts:
    task: str
    counts: dict[str, int] = field(default_factory=dict)

    def get(self, status: str) -> int:
        return self.counts.get(status, 0)


@dataclass
class Minute:
    minute: datetime
    succeeded: int
    failed: int
    cancelled: int
    depth: int

    @property
    def ended(self) -> int:
        return self.succeeded + self.failed + self.cancelled


@dataclass
class Overview:
    now: datetime
    tasks: list[TaskCounts]
    minutes: list[Minute]
    workers: list[dict[str, Any]]
    archive_estimate: int | None
    archive_exact: bool = False  # a count of a small archive, not the planner's estimate
    tasks_truncated: bool = False

    def total(self, status: str) -> int:
        return sum(t.get(status) for t in self.tasks)


@dataclass
class JobPage:
    rows: list[dict[str, Any]]
    next_cursor: Cursor | None
    now: datetime


@dataclass
class JobDetail:
    row: dict[str, Any]
    worker: dict[str, Any] | None
    now: datetime

    @property
    def encrypted(self) -> bool:
        return self.row.get("arguments_enc") is not None or self.row.get("results_enc") is not None

    @property
    def undecodable(self) -> str | None:
        """Why stored arguments or the result cannot be read, or None."""
        reasons = [v.reason for v in (self.row.get("parameters"), self.row.get("parameters_keyed"),
                                      self.row.get("results")) if isinstance(v, Undecodable)]
        return "; ".join(reasons) or None


def minute_series(start: datetime, groups: list[dict[str, Any]]) -> list[Minute]:
    """Sixty minutes from ``start``: jobs ended in each by outcome, and the queue depth at each one's end."""
    minutes = [Minute(start + timedelta(minutes=i), 0, 0, 0, 0) for i in range(60)]
    change = [0] * 61
    for g in groups:
        n = g["n"]
        if g["status"] is not None and 0 <= g["ended_in"] < 60:
            field_name = g["status"].lower()
            setattr(minutes[g["ended_in"]], field_name, getattr(minutes[g["ended_in"]], field_name) + n)
        if g["due_in"] is not None:
            change[min(max(g["due_in"], 0), 60)] += n
            if g["left_in"] is not None:
                change[min(max(g["left_in"], 0), 60)] -= n
    depth = 0
    for minute, delta in zip(minutes, change):
        depth += delta
        minute.depth = max(depth, 0)
    return minutes


class WebQueries:
    def __init__(self, db: Database, remembered: int = 10_000) -> None:
        self.db = db
        self.schema = db.queries.schema_quoted
        self.lock_space = liveness_lock_space(db.schema)
        # (rid, ended) -> why the job's payload cannot be decoded, or None: a job's arguments never
        # change, nor does an ended job's result.
        self._undecodable: OrderedDict[tuple[UUID, bool], str | None] = OrderedDict()
        self._remembered = remembered
        self._lock = threading.Lock()

    def _sql(self, text: str) -> str:
        return text.replace("{schema}", self.schema)

    @contextmanager
    def _reading(self) -> Iterator[psycopg.Cursor[dict[str, Any]]]:
        with self.db.connection() as conn:
            with conn.transaction():
                conn.execute(READ_SETTINGS)
                cur = conn.cursor()
                # A value written by SQL that Python cannot decode reads as Undecodable, not as an error.
                cur.adapters.register_loader("json", TolerantJsonLoader)
                cur.adapters.register_loader("jsonb", TolerantJsonbLoader)
                yield cur

    # -- overview ------------------------------------------------------------------

    def overview(self) -> Overview:
        with self._reading() as cur:
            now = cur.execute(DB_NOW).fetchone()["now"]  # type: ignore[index]
            tasks: dict[str, TaskCounts] = {}
            for query in (ACTIVE_COUNTS, ENDED_COUNTS):
                for row in cur.execute(self._sql(query)):
                    tasks.setdefault(row["task_name"], TaskCounts(row["task_name"])).counts[row["status"]] = row["n"]
            first = cur.execute(MINUTES_START).fetchone()
            assert first is not None
            start = first["start"]
            minutes = minute_series(start.astimezone(timezone.utc),
                                    cur.execute(self._sql(MINUTE_GROUPS)).fetchall())
            workers = cur.execute(self._sql(WORKERS), {"lock_space": self.lock_space}).fetchall()
            found = cur.execute(ARCHIVE_ESTIMATE, {"table": f"{self.schema}.job_archive"}).fetchone()
            estimate: int | None = found["estimate"] if found else None
            exact = False
            if estimate is None or estimate < 0:  # never analyzed: count, but never more than a few rows
                few = cur.execute(self._sql(ARCHIVE_SMALL_COUNT), {"limit": SMALL_COUNT_LIMIT + 1}).fetchone()
                estimate, exact = (min(few["n"], SMALL_COUNT_LIMIT), few["n"] <= SMALL_COUNT_LIMIT) if few else (None, False)
        ordered = sorted(tasks.values(), key=lambda t: t.task)
        return Overview(now, ordered[:MAX_TASK_ROWS], minutes, workers, estimate, archive_exact=exact,
                        tasks_truncated=len(ordered) > MAX_TASK_ROWS)

    # -- job lists -----------------------------------------------------------------

    def _where(self, f: JobFilter, ended: bool, params: dict[str, Any]) -> list[str]:
        """The filter as SQL conditions (constant text) and their parameters."""
        time_column = "ended_at" if ended else "created_at"
        conditions = ["status = ANY(%(statuses)s)"]
        params["statuses"] = list(f.statuses)
        if f.task is not None:
            conditions.append("task_name = %(task)s")
            params["task"] = f.task
        if f.since is not None:
            conditions.append(f"{time_column} >= %(since)s")
            params["since"] = f.since
        if f.until is not None:
            conditions.append(f"{time_column} < %(until)s")
            params["until"] = f.until
        if f.rid_range is not None:
            conditions.append("rid BETWEEN %(rid_low)s AND %(rid_high)s")
            params["rid_low"], params["rid_high"] = f.rid_range
        return conditions

    def _page_sql(self, f: JobFilter, cursor: Cursor | None, limit: int,
                  params: dict[str, Any], columns: str) -> str:
        if f.ended:
            conditions = self._where(f, True, params)
            if cursor is not None:
                # The first condition alone is what the ended_at index answers.
                conditions.append("ended_at <= %(at)s AND (ended_at < %(at)s OR id < %(id)s)")
                params["at"], params["id"] = cursor.at, cursor.id
            order = "ended_at DESC, id DESC"
            table, ended_column = "job_archive", "ended_at"
        else:
            conditions = self._where(f, False, params)
            if cursor is not None:
                conditions.append("id < %(id)s")
                params["id"] = cursor.id
            order = "id DESC"  # ids grow with insertion: newest first, on the primary key
            table, ended_column = "job", "NULL::timestamptz AS ended_at"
        params["limit"] = limit
        return (f"SELECT {columns}, {ended_column} FROM {self.schema}.{table} "
                f"WHERE {' AND '.join(conditions)} ORDER BY {order} LIMIT %(limit)s")

    def jobs(self, f: JobFilter, cursor: Cursor | None, limit: int) -> JobPage:
        """One page, newest first, and where the next one starts (None on the last page)."""
        params: dict[str, Any] = {}
        with self._reading() as cur:
            now = cur.execute(DB_NOW).fetchone()["now"]  # type: ignore[index]
            if f.rid_range is not None and f.status in ("active", "ended"):
                # A rid search looks everywhere: it matches a handful of rows at most.
                rows = self._search_both(cur, f, limit)
                self._mark_undecodable(cur, rows)
                return JobPage(rows, None, now)
            query = self._page_sql(f, cursor, limit + 1, params, LIST_COLUMNS)
            rows = cur.execute(query, params).fetchall()
            more = len(rows) > limit
            rows = rows[:limit]
            self._mark_undecodable(cur, rows)
        next_cursor = None
        if more and rows:
            last = rows[-1]
            next_cursor = Cursor(last["id"], last["ended_at"] if f.ended else None)
        return JobPage(rows, next_cursor, now)

    def _search_both(self, cur: psycopg.Cursor[dict[str, Any]], f: JobFilter, limit: int) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for status in ("active", "ended"):
            params: dict[str, Any] = {}
            sub = JobFilter(status, f.task, f.since, f.until, f.rid, f.rid_range)
            found += cur.execute(self._page_sql(sub, None, limit, params, LIST_COLUMNS), params).fetchall()
        return found[:limit]

    def _mark_undecodable(self, cur: psycopg.Cursor[dict[str, Any]], rows: list[dict[str, Any]]) -> None:
        """Set each row's "undecodable": why its arguments or result cannot be read, or None."""
        unknown = []
        with self._lock:
            for row in rows:
                key = (row["rid"], row["ended_at"] is not None)
                suspect = (row["arguments_size"] or 0) >= SUSPECT_SIZE or (row["result_size"] or 0) >= SUSPECT_SIZE
                if not suspect:
                    row["undecodable"] = None
                elif key in self._undecodable:
                    self._undecodable.move_to_end(key)
                    row["undecodable"] = self._undecodable[key]
                else:
                    unknown.append(row)
        if not unknown:
            return
        found: dict[UUID, str | None] = {}
        for payload in cur.execute(self._sql(PAYLOADS), {"rids": [r["rid"] for r in unknown]}):
            reasons = [v.reason for v in (payload["parameters"], payload["parameters_keyed"], payload["results"])
                       if isinstance(v, Undecodable)]
            found[payload["rid"]] = "; ".join(reasons) or None
        with self._lock:
            for row in unknown:
                row["undecodable"] = found.get(row["rid"])
                self._undecodable[(row["rid"], row["ended_at"] is not None)] = row["undecodable"]
            while len(self._undecodable) > self._remembered:
                self._undecodable.popitem(last=False)

    def selection(self, f: JobFilter, limit: int) -> list[UUID]:
        """The rids a bulk action on this filter covers, newest first, at most ``limit``."""
        params: dict[str, Any] = {}
        with self._reading() as cur:
            query = self._page_sql(f, None, limit, params, "rid, id")
            return [row["rid"] for row in cur.execute(query, params)]

    def db_now(self) -> datetime:
        row = self.db.execute_one(DB_NOW)
        assert row is not None
        now: datetime = row["now"]
        return now

    # -- one job --------------------------------------------------------------------

    def job(self, rid: UUID) -> JobDetail | None:
        with self._reading() as cur:
            now = cur.execute(DB_NOW).fetchone()["now"]  # type: ignore[index]
            row = cur.execute(self._sql(JOB_ACTIVE), {"rid": rid}).fetchone()
            if row is None:
                row = cur.execute(self._sql(JOB_ENDED), {"rid": rid}).fetchone()
            if row is None:
                return None
            worker = None
            if row.get("worker_rid") is not None:
                worker = cur.execute(self._sql(WORKER_BY_RID), {"rid": row["worker_rid"]}).fetchone()
        return JobDetail(row, worker, now)
