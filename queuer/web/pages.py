"""The pages: what the queue, a job, a workflow, the schedules and the audit log look like now. They only read."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta, timezone
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from queuer.model.job import Job, JobStatus
from queuer.model.workflow import WorkflowInfo
from queuer.web import charts
from queuer.web.context import WebContext
from queuer.web.graph import layout, ordered_counts
from queuer.web.overview import STATUS_ORDER, Overview
from queuer.web.params import (
    AUDIT_PARAMS,
    JOB_LIST_PARAMS,
    check_names,
    parse_audit,
    parse_cursor,
    parse_filter,
    parse_notice,
    parse_uuid,
    parse_workflow_id,
    task_name_ok,
)
from queuer.web.reads import MAX_RELATED
from queuer.web.store import AUDIT_ACTIONS

NOTICE = frozenset({"notice"})
TABS = (("active", "Active"), ("queued", "Queued"), ("scheduled", "Scheduled"), ("running", "Running"),
        ("waiting", "Waiting"), ("ended", "Ended"), ("succeeded", "Succeeded"), ("failed", "Failed"),
        ("cancelled", "Cancelled"))


def origin(options: Any) -> dict[str, Any]:
    """Where a job came from, from its options column (jsonb any producer may have written: never trusted)."""
    options = options if isinstance(options, dict) else {}
    extra = options.get("extra") if isinstance(options.get("extra"), dict) else {}
    recurring = options.get("schedule")
    cron = extra.get("schedule")
    return {"cron": str(cron) if cron else None, "triggered": bool(extra.get("triggered")),
            "recurring": (recurring if isinstance(recurring, dict) else {}) if recurring else None}


WORKFLOW_TABLE_ROWS = 500  # the jobs a workflow's table lists (its graph covers them all)
MAX_AFTER = 10  # the parents a row of that table names


def workflow_status(counts: Mapping[str, int]) -> str:
    """The workflow's status by WorkflowInfo's own rule, which depends only on which statuses occur:
    one stand-in job per status is enough."""
    stand_ins = [Job(UUID(int=0), "", JobStatus(status)) for status in counts if status in JobStatus.__members__]
    return WorkflowInfo("", stand_ins).status.value


def worker_liveness(w: dict[str, Any]) -> tuple[str, str]:
    """(css class, words) for a worker row: how sure we are that it is alive."""
    if w["status"] == "DEAD":
        return "bad", "dead"
    if w["status"] == "STOPPED":
        return "muted", "stopped"
    if w["session_held"]:
        return "good", "alive (session held)"
    silent = w["silent_seconds"] or 0.0
    if silent < 10:
        return "good", "alive (heartbeat)"
    return "warn", f"silent for {silent:.0f} s"


class Pages:
    def __init__(self, web: WebContext) -> None:
        self.web = web

    def _overview_context(self, overview: Overview) -> dict[str, Any]:
        since_hour = (overview.now - timedelta(hours=1)).astimezone(timezone.utc).isoformat()
        workers = [{**w, "liveness_class": worker_liveness(w)[0], "liveness_text": worker_liveness(w)[1]}
                   for w in overview.workers]

        def count_url(task: str, status: str) -> str:
            params = {"status": status.lower(), "task": task}
            if status in ("SUCCEEDED", "FAILED", "CANCELLED"):
                params["since"] = since_hour  # the table counts the last hour
            return "/jobs?" + urlencode(params)

        return dict(ov=overview, statuses=STATUS_ORDER, since_hour=since_hour, workers=workers, count_url=count_url,
                    task_name_ok=task_name_ok,
                    ended=charts.ended_chart(overview.minutes), depth=charts.depth_chart(overview.minutes),
                    alive=sum(1 for w in workers if w["liveness_class"] == "good"),
                    refresh_ms=int(self.web.settings.refresh_seconds * 1000))

    async def overview(self, request: Request) -> Response:
        notice = parse_notice(check_names(request.query_params.multi_items(), NOTICE))
        overview = await run_in_threadpool(self.web.reads.overview)
        return self.web.views.render(request, "overview.html", notice=notice, **self._overview_context(overview))

    async def overview_fragment(self, request: Request) -> Response:
        check_names(request.query_params.multi_items(), frozenset())
        overview = await run_in_threadpool(self.web.reads.overview)
        return self.web.views.render(request, "_live.html", **self._overview_context(overview))

    async def jobs(self, request: Request) -> Response:
        values = check_names(request.query_params.multi_items(), JOB_LIST_PARAMS | NOTICE)
        notice = parse_notice(values)
        f = parse_filter(values)
        cursor = parse_cursor(values["cursor"], f.ended) if values.get("cursor", "").strip() else None
        settings = self.web.settings
        page = await run_in_threadpool(self.web.reads.jobs, f, cursor, settings.page_size)
        next_url = None
        if page.next_cursor is not None:
            next_url = "/jobs?" + urlencode({**f.params(), "cursor": page.next_cursor.encode()})
        return self.web.views.render(request, "jobs.html", notice=notice, f=f, page=page, next_url=next_url,
                                     first_url="/jobs?" + urlencode(f.params()), paged=cursor is not None,
                                     tabs=TABS, bulk_limit=settings.bulk_limit,
                                     task_pausable=f.task is not None and task_name_ok(f.task))

    async def job(self, request: Request) -> Response:
        web = self.web
        notice = parse_notice(check_names(request.query_params.multi_items(), NOTICE))
        rid = parse_uuid(request.path_params["rid"], "the job rid")
        detail = await run_in_threadpool(web.reads.job, rid)
        if detail is None:
            return web.views.error(request, 404, f"No job {rid}: it may have been pruned from the archive.")
        row = detail.row
        payload: dict[str, Any] = {"state": "clear", "parameters": row.get("parameters"),
                                   "parameters_keyed": row.get("parameters_keyed"), "result": row.get("results")}
        if detail.encrypted:
            payload = {"state": "encrypted"}
            if web.settings.show_encrypted and web.q.keyring is not None:
                opened = await run_in_threadpool(web.q.get_job, rid)
                if opened.encrypted:
                    payload = {"state": "unreadable"}
                else:
                    payload = {"state": "decrypted", "parameters": opened.parameters,
                               "parameters_keyed": opened.parameters_keyed, "result": opened.result}
        return web.views.render(request, "job.html", notice=notice, d=detail, job=row, payload=payload,
                                max_related=MAX_RELATED,
                                origin=origin(row.get("options")), undecodable=detail.undecodable,
                                ended=row["status"] in ("SUCCEEDED", "FAILED", "CANCELLED"))

    async def workflow(self, request: Request) -> Response:
        web = self.web
        notice = parse_notice(check_names(request.query_params.multi_items(), NOTICE))
        workflow_id = parse_workflow_id(request.path_params["workflow_id"])
        detail = await run_in_threadpool(web.reads.workflow, workflow_id)
        if detail is None:
            return web.views.error(request, 404, f"No workflow {workflow_id!r}: no job, active or archived, belongs "
                                                 "to it (its jobs may have been pruned from the archive).")
        graph = await run_in_threadpool(layout, detail.jobs)  # thousands of jobs: off the event loop
        by_rid = {job["rid"]: job for job in detail.jobs}
        return web.views.render(request, "workflow.html", notice=notice, w=detail, graph=graph,
                                workflow_status=workflow_status(detail.counts),
                                counts=ordered_counts(detail.counts), by_rid=by_rid,
                                rows=detail.jobs[:WORKFLOW_TABLE_ROWS], max_after=MAX_AFTER,
                                active=any(s not in ("SUCCEEDED", "FAILED", "CANCELLED") for s in detail.counts))

    async def schedules(self, request: Request) -> Response:
        notice = parse_notice(check_names(request.query_params.multi_items(), NOTICE))
        found = await run_in_threadpool(self.web.q.get_schedules)
        now = await run_in_threadpool(self.web.reads.db_now)
        return self.web.views.render(request, "schedules.html", notice=notice, schedules=found, now=now)

    async def audit(self, request: Request) -> Response:
        values = check_names(request.query_params.multi_items(), AUDIT_PARAMS)
        f, cursor = parse_audit(values, AUDIT_ACTIONS)
        page = await run_in_threadpool(self.web.store.page, f.action, f.rid, cursor, self.web.settings.page_size)
        next_url = None
        if page.next_cursor is not None:
            next_url = "/audit?" + urlencode({**f.params(), "cursor": str(page.next_cursor)})
        return self.web.views.render(request, "audit.html", f=f, page=page, next_url=next_url,
                                     paged=cursor is not None, first_url="/audit?" + urlencode(f.params()),
                                     audit_actions=AUDIT_ACTIONS)
