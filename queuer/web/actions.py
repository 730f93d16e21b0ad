"""The actions: the POSTs behind the pages' buttons. Each reads its form (read-only mode, readers and CSRF
checked there), does its operation, records it in the audit log, and redirects to what it changed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TypeVar
from urllib.parse import quote, urlencode
from uuid import UUID

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from queuer.web import operations
from queuer.web.context import WebContext
from queuer.web.forms import read_form
from queuer.web.params import (
    BadRequest,
    JobFilter,
    parse_filter,
    parse_name,
    parse_task_name,
    parse_uuid,
    parse_workflow_id,
)

T = TypeVar("T")
FILTER_FIELDS = frozenset({"status", "task", "since", "until", "rid"})


class Actions:
    def __init__(self, web: WebContext) -> None:
        self.web = web

    async def act(self, request: Request, action: str, call: Callable[[], T], target: str | None = None,
                  rids: Sequence[UUID] = ()) -> T:
        """Run an operation in the thread pool; one refused (404, 409...) is recorded too."""
        try:
            return await run_in_threadpool(call)
        except operations.ActionError as exc:
            await self.web.audit(request, action, target, rids, f"refused ({exc.status}): {exc.message}")
            raise

    async def cancel(self, request: Request) -> Response:
        web = self.web
        await read_form(web, request, frozenset())
        rid = parse_uuid(request.path_params["rid"], "the job rid")
        await self.act(request, "cancel", lambda: operations.cancel(web.q, rid), rids=[rid])
        await web.audit(request, "cancel", rids=[rid])
        return web.redirect(request, f"/jobs/{rid}", notice="cancelled")

    async def cancel_workflow(self, request: Request) -> Response:
        web = self.web
        await read_form(web, request, frozenset())
        workflow_id = parse_workflow_id(request.path_params["workflow_id"])
        target = f"workflow {workflow_id}"
        cancelled = await self.act(request, "cancel-workflow",
                                   lambda: operations.cancel_workflow(web.q, workflow_id, web.reads.workflow_exists),
                                   target=target)
        await web.audit(request, "cancel-workflow", target=target, rids=[job.rid for job in cancelled],
                        outcome=f"done: {len(cancelled)} job{'' if len(cancelled) == 1 else 's'} cancelled")
        return web.redirect(request, f"/workflows/{quote(workflow_id, safe='')}", notice="workflow-cancelled")

    async def requeue(self, request: Request) -> Response:
        web = self.web
        await read_form(web, request, frozenset())
        rid = parse_uuid(request.path_params["rid"], "the job rid")
        new = await self.act(request, "requeue", lambda: operations.requeue(web.q, rid), rids=[rid])
        await web.audit(request, "requeue", rids=[rid, new.rid], outcome=f"done: added again as {new.rid}")
        return web.redirect(request, f"/jobs/{new.rid}", notice="requeued")

    async def stop_worker(self, request: Request) -> Response:
        web = self.web
        await read_form(web, request, frozenset())
        rid = parse_uuid(request.path_params["rid"], "the worker rid")
        worker = await self.act(request, "stop-worker", lambda: operations.stop_worker(web.q, rid),
                                target=f"worker {rid}")
        await web.audit(request, "stop-worker", target=f"worker {rid} ({worker.name})")
        return web.redirect(request, "/", notice="stopping")

    async def schedule(self, request: Request) -> Response:
        web = self.web
        values = await read_form(web, request, frozenset({"name", "action"}))
        name = parse_name(values.get("name", ""), "the schedule name")
        action = values.get("action", "")
        if action not in operations.SCHEDULE_ACTIONS:
            raise BadRequest(f"action must be one of {', '.join(operations.SCHEDULE_ACTIONS)}")
        what = f"schedule-{action}"
        job = await self.act(request, what, lambda: operations.schedule(web.q, name, action), target=name)
        if job is not None:
            await web.audit(request, what, target=name, rids=[job.rid], outcome=f"done: added job {job.rid}")
            return web.redirect(request, f"/jobs/{job.rid}", notice="triggered")
        await web.audit(request, what, target=name)
        return web.redirect(request, "/schedules", notice={"pause": "paused", "resume": "resumed"}[action])

    async def task(self, request: Request) -> Response:
        """Pause or resume a task on every worker; back to the overview, or (with ``status``) to the list of
        the task's jobs the form was on."""
        web = self.web
        values = await read_form(web, request, frozenset({"name", "action", "status"}))
        name = parse_task_name(values.get("name", ""))
        action = values.get("action", "")
        if action not in operations.TASK_ACTIONS:
            raise BadRequest(f"action must be one of {', '.join(operations.TASK_ACTIONS)}")
        back = parse_filter({"status": values["status"], "task": name}) if "status" in values else None
        what, target = f"{action}-task", f"task {name}"
        await self.act(request, what, lambda: operations.task(web.q, name, action), target=target)
        await web.audit(request, what, target=target)
        notice = "task-paused" if action == "pause" else "task-resumed"
        if back is not None:
            return web.redirect(request, "/jobs", **back.params(), notice=notice)
        return web.redirect(request, "/", notice=notice)

    async def bulk(self, request: Request) -> Response:
        """Without ``confirm=yes`` a page that says how many jobs the filter covers; with it, the action."""
        web = self.web
        values = await read_form(web, request, FILTER_FIELDS | {"action", "confirm"})
        action = values.pop("action", "")
        confirmed = values.pop("confirm", "") == "yes"
        f = parse_filter(values)
        if action == "cancel" and f.ended:
            raise BadRequest("ended jobs cannot be cancelled: choose an active status")
        if action == "requeue" and not f.ended:
            raise BadRequest("only ended jobs can be queued again: choose an ended status")
        if action not in ("cancel", "requeue"):
            raise BadRequest("action must be cancel or requeue")
        limit = web.settings.bulk_limit
        if not confirmed:
            if f.until is None:
                # Pin the selection: jobs that arrive after this page are not part of it.
                now = await run_in_threadpool(web.reads.db_now)
                f = JobFilter(f.status, f.task, f.since, now + timedelta(microseconds=1), f.rid, f.rid_range)
            selected = await run_in_threadpool(web.reads.selection, f, limit + 1)
            return web.views.render(request, "confirm.html", f=f, action=action, count=min(len(selected), limit),
                                    more=len(selected) > limit, limit=limit)
        rids = await run_in_threadpool(web.reads.selection, f, limit)
        result = await run_in_threadpool(operations.bulk, web.q, action, rids)
        await web.audit(request, f"bulk-{action}", target=f.describe(), rids=result.done,
                        outcome=f"{len(result.done)} done, {len(result.skipped)} skipped")
        return web.views.render(request, "bulk_done.html", f=f, action=action, result=result,
                                back="/jobs?" + urlencode(f.params()))
