"""Workflows: a builder of jobs that depend on jobs, and what a running workflow job may ask for.

``q.workflow(id)`` gives a ``Workflow``: ``add_job`` / ``add_jobs`` hand out
``WorkflowJob`` handles (rids known at once) that later jobs may depend on;
``commit()`` writes everything added since the last commit in one transaction.
A handle can only name a job added before it, so a workflow cannot hold a cycle.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any
from uuid import UUID

import psycopg

from queuer.client.enqueue import JobBuilder, check_batch
from queuer.database.callers import check_callers_connection, join_callers_transaction, on_callers_connection
from queuer.database.job_db import JobDB
from queuer.database.workflow_db import Link, WorkflowDB
from queuer.model.batch_job import BatchJob
from queuer.model.ids import new_rid
from queuer.model.options import Options
from queuer.model.rows import NewJob
from queuer.model.workflow import WorkflowJob
from queuer.observability import tracing
from queuer.payload.serialization import storable_size, to_json

ON_DEPENDENCY_FAILURE = ("cancel", "run")
MAX_WORKFLOW_ID_LENGTH = 200

Dependency = WorkflowJob | UUID | str


@dataclass
class _Pending:
    """A job added and not committed yet: its row is built while the COPY runs."""

    link: Link
    task: Any
    task_name: str
    parameters: Sequence[Any]
    parameters_keyed: Mapping[str, Any]
    options: Options | None
    index: int  # its place in its add_jobs call, for error messages


class Workflow:
    """Jobs that depend on jobs, added together: build with ``add_job`` / ``add_jobs``, write with ``commit``."""

    def __init__(self, workflow_id: str, builder: JobBuilder, job_db: JobDB, workflow_db: WorkflowDB,
                 trace_parent: Any = None) -> None:
        self.id = validate_workflow_id(workflow_id)
        self._builder = builder
        self._job_db = job_db
        self._workflow_db = workflow_db
        self._trace_parent = trace_parent
        self._pending: list[_Pending] = []
        self._known: set[UUID] = set()  # every job this builder handed out, committed or not
        self._committed = 0

    def __repr__(self) -> str:
        return f"<Workflow {self.id!r}: {len(self._pending)} job(s) to commit, {self._committed} committed>"

    def add_job(
        self,
        task: Callable[..., Any] | str,
        /,
        *parameters: Any,
        depends_on: Sequence[Dependency] = (),
        on_dependency_failure: str = "cancel",
        options: Options | None = None,
        **parameters_keyed: Any,
    ) -> WorkflowJob:
        """Add a job that runs once every job of ``depends_on`` has ended; nothing is written before ``commit``.

        ``on_dependency_failure``: "cancel" (a parent that did not succeed cancels this job, and its
        own dependents in turn) or "run" (it runs anyway and sees the parent in ``dependencies()``).
        Everything wrong with the job is raised here, as ``add_job`` does; its arguments are
        serialized again at ``commit`` (with its trace), so pass values that do not change meanwhile.
        """
        pending = self._add([(task, parameters, parameters_keyed, options)], depends_on, on_dependency_failure)
        try:
            self._build(pending[0], None)  # checked now, not at commit
        except BaseException:
            self._pending.pop()
            self._known.discard(pending[0].link.rid)
            raise
        return self._handle(pending[0])

    def add_jobs(
        self, batch_jobs: Iterable[BatchJob], *, depends_on: Sequence[Dependency] = (),
        on_dependency_failure: str = "cancel",
    ) -> list[WorkflowJob]:
        """Add many jobs (a fan-out), each depending on ``depends_on``.

        As with ``add_jobs``, the arguments are serialized while the COPY runs: an item that cannot be
        (not JSON, too large) makes ``commit`` raise, and then nothing is written.
        """
        batch = list(batch_jobs)
        check_batch(batch)
        items = []
        for item in batch:
            options = item.options
            _check_options(options)
            if item.execute_after is not None:
                options = replace(options or Options(), execute_after=item.execute_after)
            items.append((item.task, item.parameters or (), item.parameters_keyed or {}, options))
        return [self._handle(pending) for pending in self._add(items, depends_on, on_dependency_failure)]

    def _add(self, items: Sequence[tuple[Any, Sequence[Any], Mapping[str, Any], Options | None]],
             depends_on: Sequence[Dependency], on_dependency_failure: str) -> list[_Pending]:
        if on_dependency_failure not in ON_DEPENDENCY_FAILURE:
            raise ValueError(f"on_dependency_failure must be 'cancel' or 'run', not {on_dependency_failure!r}")
        parents = self._parents(depends_on)
        name_of = self._builder.tasks.name_of  # an unknown task fails here, not at commit
        added = [_Pending(Link(new_rid(), parents, on_dependency_failure), task, name_of(task), parameters,
                          parameters_keyed, options, index if len(items) > 1 else -1)
                 for index, (task, parameters, parameters_keyed, options) in enumerate(items)]
        self._pending.extend(added)
        self._known.update(pending.link.rid for pending in added)
        return added

    def _handle(self, pending: _Pending) -> WorkflowJob:
        return WorkflowJob(pending.link.rid, pending.task_name, self.id, pending.link.depends_on)

    def _build(self, pending: _Pending, spans: tracing.Sending | None) -> NewJob:
        _check_options(pending.options)
        try:
            new = self._builder.build(pending.task, pending.parameters, pending.parameters_keyed, pending.options,
                                      tracing=spans, rid=pending.link.rid)
        except (TypeError, ValueError, LookupError) as exc:
            if pending.index >= 0:
                exc.args = (f"batch item {pending.index}: {exc}",)
            raise
        new.workflow_id = self.id
        new.depends_on = pending.link.depends_on
        if pending.link.on_dependency_failure != "cancel":  # read by the database when a parent fails
            stored = {**(json.loads(new.options) if new.options else {}), "on_dependency_failure": "run"}
            new.options = to_json(stored, "the options of a workflow job")
            storable_size(new.options, "the options of a workflow job")
        return new

    def _parents(self, depends_on: Sequence[Dependency]) -> tuple[UUID, ...]:
        if isinstance(depends_on, (str, WorkflowJob, UUID)):
            depends_on = [depends_on]
        parents: dict[UUID, None] = {}
        for parent in depends_on:
            if isinstance(parent, WorkflowJob):
                if parent.rid not in self._known:
                    raise ValueError(f"job {parent.rid} belongs to workflow {parent.workflow_id!r} and was not added "
                                     f"by this builder of {self.id!r}: depend on its rid once it is committed")
                parents[parent.rid] = None
            elif isinstance(parent, UUID):
                parents[parent] = None
            elif isinstance(parent, str):
                try:
                    parents[UUID(parent)] = None
                except ValueError:
                    raise ValueError(f"depends_on takes job handles or rids, not {parent!r}") from None
            else:
                raise TypeError(f"depends_on takes job handles or rids, not {type(parent).__name__}")
        return tuple(parents)

    def commit(self) -> list[UUID]:
        """Write every job added since the last commit, in one transaction; return their rids.

        UnknownDependencyError (a ValueError) when a job depends on a rid of no job: then nothing is written.
        """
        return self._commit(None)

    def commit_tx(self, conn: psycopg.Connection[Any]) -> list[UUID]:
        """``commit`` inside the caller's transaction: the jobs exist only if it commits."""
        conn = check_callers_connection(conn)
        with on_callers_connection(conn):
            join_callers_transaction(conn)
            return self._commit(conn)

    def _commit(self, conn: psycopg.Connection[Any] | None) -> list[UUID]:
        pending = self._pending
        if not pending:
            return []
        in_batch = {p.link.rid for p in pending}
        earlier = list(dict.fromkeys(parent for p in pending for parent in p.link.depends_on if parent not in in_batch))
        dependents: dict[UUID, list[UUID]] = {}
        for p in pending:
            for parent in p.link.depends_on:
                if parent in in_batch:
                    dependents.setdefault(parent, []).append(p.link.rid)

        def rows(spans: tracing.Sending) -> Iterator[NewJob]:
            for p in pending:
                new = self._build(p, spans)
                new.dependents = dependents.get(new.rid)
                yield new

        def settle(cur: psycopg.Cursor[dict[str, Any]], rids: list[UUID]) -> None:
            self._workflow_db.settle(cur, [p.link for p in pending], earlier)

        with tracing.sending(self._trace_parent) as spans:
            rids = self._job_db.insert_jobs(rows(spans), conn, unique_keys=False, then=settle)
            spans.sent(rids)
        self._pending = []
        self._committed += len(rids)
        return rids


def _check_options(options: Options | None) -> None:
    if options is None:
        return
    if options.schedule is not None:
        raise ValueError("a workflow job runs once: it cannot have a schedule (add a recurring job outside it)")
    if options.unique_key is not None:
        raise ValueError("a workflow job cannot have a unique_key: the workflow's id names the whole set")


def validate_workflow_id(workflow_id: str) -> str:
    if not isinstance(workflow_id, str) or not workflow_id or len(workflow_id) > MAX_WORKFLOW_ID_LENGTH \
            or not workflow_id.isprintable() or workflow_id != workflow_id.strip():
        raise ValueError(f"a workflow id is 1 to {MAX_WORKFLOW_ID_LENGTH} printable characters without leading or "
                         f"trailing spaces, not {workflow_id!r}")
    return workflow_id
