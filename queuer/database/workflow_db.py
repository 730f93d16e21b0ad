"""WorkflowDB: jobs that depend on jobs, and the steps of a job.

Adding a workflow's jobs is ``JobDB.insert_jobs`` (one COPY: each job with the
parents it waits for and the dependents it has in the same insert) followed, in
the same transaction, by ``settle`` for parents added earlier. What happens when
a parent ends is the archive's trigger (migration 0009).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple
from uuid import UUID

import psycopg

from queuer.database.connection import Database
from queuer.database.job_db import JobDB
from queuer.errors import UnknownDependencyError
from queuer.model.job import Job, JobStatus


class Link(NamedTuple):
    """A job of a workflow as its dependencies see it."""

    rid: UUID
    depends_on: tuple[UUID, ...]
    on_dependency_failure: str  # "cancel" or "run"


class WorkflowDB:
    def __init__(self, db: Database, job_db: JobDB) -> None:
        self.db = db
        self.q = db.queries
        self.job_db = job_db

    def settle(self, cur: psycopg.Cursor[dict[str, Any]], jobs: Sequence[Link], earlier: Sequence[UUID]) -> None:
        """Count down what ``earlier`` parents allow for ``jobs`` (just copied in, with their parents
        in the same insert already counted).

        ``earlier`` are parents added before: those still active are given their new dependents and
        held until the transaction ends (so none ends unseen), those that already ended count as ended
        now, and a failed one cancels the children that run only after success.
        UnknownDependencyError for a rid of no job.
        """
        if not earlier:
            return
        wanted = set(earlier)
        edges = [(parent, job.rid) for job in jobs for parent in job.depends_on if parent in wanted]
        held = cur.execute(self.q.hold_parents, {
            "parents": [parent for parent, _ in edges], "children": [child for _, child in edges]}).fetchone()
        active = set(held["active"]) if held else set()
        gone = [rid for rid in earlier if rid not in active]
        if not gone:
            return
        statuses = {row["rid"]: row["status"] for row in cur.execute(self.q.ended_parents, {"rids": gone})}
        unknown = [rid for rid in gone if rid not in statuses]
        if unknown:
            raise UnknownDependencyError(
                f"job {unknown[0]} does not exist: a workflow job may depend only on jobs of its workflow "
                "or on jobs that were added before it")
        counted: dict[UUID, int] = {}
        doomed: list[UUID] = []
        for job in jobs:
            ended = [statuses[rid] for rid in job.depends_on if rid in statuses]
            if not ended:
                continue
            if job.on_dependency_failure == "cancel" and any(s != JobStatus.SUCCEEDED.value for s in ended):
                doomed.append(job.rid)
            else:
                counted[job.rid] = len(ended)
        if counted:
            cur.execute(self.q.count_down_children, {
                "rids": list(counted), "ended": list(counted.values()), "channel": self.db.channel})
        if doomed:
            cur.execute(self.q.cancel_job, {
                "rids": doomed, "channel": self.db.channel,
                "reason": "DependencyFailedError: a job that this job depends on had already ended without "
                          'succeeding (on_dependency_failure="cancel")'})

    def dependencies(self, rids: Sequence[UUID]) -> list[Job]:
        """The ended jobs among ``rids``, in the order given."""
        by_rid = {job.rid: job for job in map(self.job_db.open_row, self.db.execute(self.q.dependencies_of,
                                                                                     {"rids": list(rids)}))}
        return [by_rid[rid] for rid in rids if rid in by_rid]

    def jobs_of(self, workflow_id: str) -> list[Job]:
        """Every job of a workflow, active or ended, in the order they were added."""
        params = {"workflow_id": workflow_id}
        rows = self.db.execute(self.q.workflow_active_jobs, params) + self.db.execute(self.q.workflow_ended_jobs, params)
        return sorted(map(self.job_db.open_row, rows), key=lambda job: job.id or 0)

    def active_rids(self, workflow_id: str) -> list[UUID]:
        return [row["rid"] for row in self.db.execute(self.q.workflow_active_rids, {"workflow_id": workflow_id})]

    def save_step(self, job_id: int, attempt: int, worker_rid: UUID, name: str, value_json: str) -> bool:
        """Keep a step's result with the job; False when this attempt no longer holds it."""
        return self.db.execute_one(self.q.save_step, {
            "id": job_id, "attempt": attempt, "worker_rid": worker_rid, "name": name, "value": value_json,
        }) is not None
