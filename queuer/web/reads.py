"""What the pages read: the overview, a page of jobs, one job, a bulk action's selection, a workflow.

Each page reads in one short read-only transaction (``queuer.database.reading``),
through the statements of ``database/sql/web.sql``.

Costs, with a large archive: the overview reads only archive rows that ended
in the last hour (the ended_at index) plus the live queue; a jobs page reads
one page by keyset, (ended_at, id) in the archive and id in the queue, and
never counts the archive (its size is the planner's estimate).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

import psycopg

from queuer.database.connection import Database
from queuer.database.reading import read_transaction
from queuer.database.worker_db import liveness_lock_space
from queuer.model.control import TaskControl
from queuer.payload.serialization import Undecodable
from queuer.web.overview import Overview, TaskCounts, minute_series
from queuer.web.params import Cursor, JobFilter

MAX_TASK_ROWS = 500
SMALL_COUNT_LIMIT = 10_000  # before the first ANALYZE the overview counts the archive, up to this
# Python's JSON reader refuses only values nested some 1,000 levels deep or holding an integer of
# more than 4,300 digits: no value shorter than this can be one, so a list decodes (once per job,
# remembered) only the arguments and results of jobs whose stored size reaches it.
SUSPECT_SIZE = 1000
MAX_RELATED = 50  # parents and dependents a job's page lists (a fan-in may have thousands)
MAX_WORKFLOW_JOBS = 20_000  # jobs a workflow's page reads to draw; its counts are always exact

Rows = list[dict[str, Any]]


@dataclass
class JobPage:
    rows: Rows
    next_cursor: Cursor | None
    now: datetime
    control: TaskControl | None = None
    """The controls of the task the list is filtered by, when it has any."""


@dataclass
class JobDetail:
    row: dict[str, Any]
    worker: dict[str, Any] | None
    now: datetime
    related: dict[UUID, dict[str, Any]] = field(default_factory=dict)
    """The task and status of the parents and dependents the page links to, by rid (pruned ones are absent)."""

    @property
    def encrypted(self) -> bool:
        return self.row.get("arguments_enc") is not None or self.row.get("results_enc") is not None

    @property
    def undecodable(self) -> str | None:
        """Why stored arguments or the result cannot be read, or None."""
        reasons = [v.reason for v in (self.row.get("parameters"), self.row.get("parameters_keyed"),
                                      self.row.get("results")) if isinstance(v, Undecodable)]
        return "; ".join(reasons) or None


@dataclass
class WorkflowDetail:
    id: str
    counts: dict[str, int]  # every job of it, per status
    jobs: Rows  # in the order added, at most MAX_WORKFLOW_JOBS

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def truncated(self) -> bool:
        return self.total > len(self.jobs)


def _one(cur: psycopg.Cursor[dict[str, Any]]) -> dict[str, Any]:
    row = cur.fetchone()
    assert row is not None  # a statement that always returns a row
    return row


def filter_params(f: JobFilter, cursor: Cursor | None, limit: int) -> dict[str, Any]:
    """The parameters of the web_jobs_* and web_selection_* statements: NULL for what the filter leaves open."""
    rid_low, rid_high = f.rid_range if f.rid_range is not None else (None, None)
    return {"statuses": list(f.statuses), "task": f.task, "since": f.since, "until": f.until,
            "rid_low": rid_low, "rid_high": rid_high, "before_id": cursor.id if cursor is not None else None,
            "before_at": cursor.at if cursor is not None else None, "limit": limit}


class WebReads:
    def __init__(self, db: Database, remembered: int = 10_000) -> None:
        self.db = db
        self.sql = db.queries
        self.lock_space = liveness_lock_space(db.schema)
        # (rid, ended) -> why the job's payload cannot be decoded, or None: a job's arguments never
        # change, nor does an ended job's result.
        self._undecodable: OrderedDict[tuple[UUID, bool], str | None] = OrderedDict()
        self._remembered = remembered
        self._lock = threading.Lock()

    def db_now(self) -> datetime:
        row = self.db.execute_one(self.sql.db_now)
        assert row is not None
        now: datetime = row["db_now"]
        return now

    # -- overview ------------------------------------------------------------------

    def overview(self) -> Overview:
        sql = self.sql
        with read_transaction(self.db) as cur:
            now = _one(cur.execute(sql.db_now))["db_now"]
            tasks: dict[str, TaskCounts] = {}
            for query in (sql.web_active_counts, sql.web_ended_counts):
                for row in cur.execute(query):
                    tasks.setdefault(row["task_name"], TaskCounts(row["task_name"])).counts[row["status"]] = row["n"]
            controls = {row["task_name"]: TaskControl.from_row(row)
                        for row in cur.execute(sql.web_task_controls, {"limit": MAX_TASK_ROWS})}
            for name in controls:  # a paused task is listed (and can be resumed) while it has no job
                tasks.setdefault(name, TaskCounts(name))
            start = _one(cur.execute(sql.web_minutes_start))["start"]
            minutes = minute_series(start.astimezone(timezone.utc), cur.execute(sql.web_minute_groups).fetchall())
            workers = cur.execute(sql.web_workers, {"lock_space": self.lock_space}).fetchall()
            found = cur.execute(sql.web_archive_estimate, {"table": f"{sql.schema_quoted}.job_archive"}).fetchone()
            estimate: int | None = found["estimate"] if found else None
            exact = False
            if estimate is None or estimate < 0:  # never analyzed: count, but never more than a few rows
                few = _one(cur.execute(sql.web_archive_small_count, {"limit": SMALL_COUNT_LIMIT + 1}))["n"]
                estimate, exact = min(few, SMALL_COUNT_LIMIT), few <= SMALL_COUNT_LIMIT
        ordered = sorted(tasks.values(), key=lambda t: t.task)
        return Overview(now, ordered[:MAX_TASK_ROWS], minutes, workers, estimate, archive_exact=exact,
                        tasks_truncated=len(ordered) > MAX_TASK_ROWS, controls=controls)

    # -- job lists -----------------------------------------------------------------

    def jobs(self, f: JobFilter, cursor: Cursor | None, limit: int) -> JobPage:
        """One page, newest first, and where the next one starts (None on the last page)."""
        with read_transaction(self.db) as cur:
            now = _one(cur.execute(self.sql.db_now))["db_now"]
            control = None
            if f.task is not None:
                found = cur.execute(self.sql.web_task_control, {"task": f.task}).fetchone()
                control = TaskControl.from_row(found) if found is not None else None
            if f.rid_range is not None and f.status in ("active", "ended"):
                # A rid search looks everywhere: it matches a handful of rows at most.
                rows = self._search_both(cur, f, limit)
                self._mark_undecodable(cur, rows)
                return JobPage(rows, None, now, control)
            query = self.sql.web_jobs_ended if f.ended else self.sql.web_jobs_active
            rows = cur.execute(query, filter_params(f, cursor, limit + 1)).fetchall()
            more = len(rows) > limit
            rows = rows[:limit]
            self._mark_undecodable(cur, rows)
        next_cursor = None
        if more and rows:
            last = rows[-1]
            next_cursor = Cursor(last["id"], last["ended_at"] if f.ended else None)
        return JobPage(rows, next_cursor, now, control)

    def _search_both(self, cur: psycopg.Cursor[dict[str, Any]], f: JobFilter, limit: int) -> Rows:
        found: Rows = []
        for status, query in (("active", self.sql.web_jobs_active), ("ended", self.sql.web_jobs_ended)):
            sub = JobFilter(status, f.task, f.since, f.until, f.rid, f.rid_range)
            found += cur.execute(query, filter_params(sub, None, limit)).fetchall()
        return found[:limit]

    def _mark_undecodable(self, cur: psycopg.Cursor[dict[str, Any]], rows: Rows) -> None:
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
        for payload in cur.execute(self.sql.web_payloads, {"rids": [r["rid"] for r in unknown]}):
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
        query = self.sql.web_selection_ended if f.ended else self.sql.web_selection_active
        with read_transaction(self.db) as cur:
            return [row["rid"] for row in cur.execute(query, filter_params(f, None, limit))]

    # -- one job --------------------------------------------------------------------

    def job(self, rid: UUID) -> JobDetail | None:
        sql = self.sql
        with read_transaction(self.db) as cur:
            now = _one(cur.execute(sql.db_now))["db_now"]
            row = cur.execute(sql.web_job_active, {"rid": rid}).fetchone()
            if row is None:
                row = cur.execute(sql.web_job_ended, {"rid": rid}).fetchone()
            if row is None:
                return None
            worker = None
            if row.get("worker_rid") is not None:
                worker = cur.execute(sql.web_worker_by_rid, {"rid": row["worker_rid"]}).fetchone()
            shown = [*(row.get("depends_on") or [])[:MAX_RELATED], *(row.get("dependents") or [])[:MAX_RELATED]]
            related = {}
            if shown:
                related = {r["rid"]: r for r in cur.execute(sql.web_jobs_brief, {"rids": shown})}
        return JobDetail(row, worker, now, related)

    # -- one workflow ---------------------------------------------------------------

    def workflow(self, workflow_id: str, limit: int = MAX_WORKFLOW_JOBS) -> WorkflowDetail | None:
        """Its counts and its first ``limit`` jobs, or None when no job belongs to it."""
        sql = self.sql
        params = {"workflow_id": workflow_id}
        with read_transaction(self.db) as cur:
            cur.execute(sql.web_snapshot)
            counts = {r["status"]: r["n"] for r in cur.execute(sql.web_workflow_counts, params)}
            if not counts:
                return None
            jobs = cur.execute(sql.web_workflow_jobs, {**params, "limit": limit}).fetchall()
        return WorkflowDetail(workflow_id, counts, jobs)

    def workflow_exists(self, workflow_id: str) -> bool:
        row = self.db.execute_one(self.sql.web_workflow_exists, {"workflow_id": workflow_id})
        return bool(row and row["found"])
