"""The web app: routes, the request guard, rendering and error pages.

Handlers are async; every database call runs in Starlette's thread pool
through the Queuer (whose pool bounds the connections this server holds).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable, Callable
from urllib.parse import urlencode

import jinja2
import psycopg
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from queuer.errors import DatabaseUnreachableError, JobNotFoundError
from queuer.queuer import Queuer
from queuer.web import actions, charts
from queuer.web.params import (
    JOB_LIST_PARAMS,
    MAX_FORM_BYTES,
    BadRequest,
    JobFilter,
    check_names,
    parse_cursor,
    parse_filter,
    parse_form,
    parse_name,
    parse_notice,
    parse_uuid,
)
from queuer.web.queries import STATUS_ORDER, Overview, WebQueries
from queuer.web.security import CSRF_COOKIE, SESSION_COOKIE, SESSION_SECONDS, Guard, host_name, is_loopback_address

log = logging.getLogger("queuer.web")

NOTICE = frozenset({"notice"})
FILTER_FIELDS = frozenset({"status", "task", "since", "until", "rid"})
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


@dataclass(frozen=True)
class WebSettings:
    read_only: bool = False
    #: show decrypted arguments and results (needs the key in QUEUER_ENCRYPTION_KEY too)
    show_encrypted: bool = False
    token: str | None = None
    refresh_seconds: float = 3.0
    page_size: int = 50
    #: the most jobs one confirmed bulk action touches
    bulk_limit: int = 1000


# -- template helpers -------------------------------------------------------------------


def _when(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _ago(value: datetime | None, now: datetime) -> str:
    if value is None:
        return "-"
    seconds = (now - value).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 60:
        text = f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    elif seconds < 3600:
        text = f"{seconds / 60:.0f} min"
    elif seconds < 172800:
        text = f"{seconds / 3600:.0f} h"
    else:
        text = f"{seconds / 86400:.0f} d"
    return f"in {text}" if future else f"{text} ago"


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0][:200] if (text or "").strip() else ""


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("queuer.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=_when, pretty=_pretty, first_line=_first_line, short=lambda rid: str(rid)[:8],
                       number=lambda n: f"{n:,}")
    env.globals.update(ago=_ago, urlencode=urlencode)
    return env


def _origin(options: Any) -> dict[str, Any]:
    """Where a job came from, from its options column (jsonb any producer may have written: never trusted)."""
    options = options if isinstance(options, dict) else {}
    extra = options.get("extra") if isinstance(options.get("extra"), dict) else {}
    recurring = options.get("schedule")
    cron = extra.get("schedule")
    return {"cron": str(cron) if cron else None, "triggered": bool(extra.get("triggered")),
            "recurring": (recurring if isinstance(recurring, dict) else {}) if recurring else None}


def _worker_liveness(w: dict[str, Any]) -> tuple[str, str]:
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


class WebApp:
    def __init__(self, q: Queuer, settings: WebSettings) -> None:
        self.q = q
        self.settings = settings
        self.queries = WebQueries(q.db)
        self.guard = Guard(settings.token)
        self.env = _environment()

    # -- rendering -----------------------------------------------------------------------

    def render(self, request: Request, template: str, status: int = 200, headers: dict[str, str] | None = None,
               **context: Any) -> HTMLResponse:
        nonce = getattr(request.state, "csrf_nonce", "") or ""
        base = request.scope.get("root_path", "")
        page = self.env.get_template(template).render(
            base=base,
            csrf=self.guard.csrf_token(nonce) if nonce else "",
            read_only=self.settings.read_only,
            signed_in=getattr(request.state, "auth", None) == "session",
            schema=self.q.db.schema,
            path=request.url.path,
            notice=context.pop("notice", None),
            **context,
        )
        return HTMLResponse(page, status_code=status, headers=headers)

    def error(self, request: Request, status: int, message: str) -> HTMLResponse:
        titles = {400: "Bad request", 401: "Sign in", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
                  409: "Conflict", 413: "Too large", 415: "Unsupported form", 503: "Database unavailable"}
        return self.render(request, "error.html", status=status, title=titles.get(status, "Error"),
                           message=message, code=status)

    # -- the guard (every request) ------------------------------------------------------------

    async def guard_request(self, request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        nonce = request.cookies.get(CSRF_COOKIE)
        fresh = None
        if not nonce or len(nonce) > 100:
            fresh = nonce = self.guard.new_csrf_nonce()
        request.state.csrf_nonce = nonce
        request.state.auth = None
        denied = self._deny(request)
        response = denied if denied is not None else await call_next(request)
        secure = request.url.scheme == "https"
        if fresh is not None:
            response.set_cookie(CSRF_COOKIE, fresh, httponly=True, samesite="strict", secure=secure, path="/")
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")  # no-referrer would make the Origin of our own forms "null"
        if not request.url.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    def _deny(self, request: Request) -> Response | None:
        """A response that refuses the request, or None to let it through."""
        if not self.guard.token_required:
            client = request.client.host if request.client else None
            if not is_loopback_address(client):
                return self.error(request, 403, "Without QUEUER_WEB_TOKEN this server answers only this machine "
                                                "(loopback). Set a token to open it to the network.")
            if not is_loopback_address(host_name(request.headers.get("host", ""))):
                return self.error(request, 403, "Without QUEUER_WEB_TOKEN this page is served only under a "
                                                "loopback name (localhost, 127.0.0.1, [::1]).")
            request.state.auth = "loopback"
            return None
        if self.guard.bearer_ok(request.headers.get("authorization")):
            request.state.auth = "bearer"
            return None
        if self.guard.session_ok(request.cookies.get(SESSION_COOKIE)):
            request.state.auth = "session"
            return None
        if request.url.path in ("/login",) or request.url.path.startswith("/static/"):
            return None
        if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return self.render(request, "login.html", status=401, next=_safe_next(target), failed=False,
                               headers={"WWW-Authenticate": 'Bearer realm="queuer"'})
        return PlainTextResponse("401: send Authorization: Bearer <QUEUER_WEB_TOKEN>, or sign in at /login\n",
                                 status_code=401, headers={"WWW-Authenticate": 'Bearer realm="queuer"'})

    async def form(self, request: Request, allowed: frozenset[str], action: bool = True) -> dict[str, str]:
        """The POSTed form, after the read-only and CSRF checks; without the csrf field."""
        if action and self.settings.read_only:
            raise actions.ActionError(403, "This server was started with --read-only: it changes nothing.")
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        length = request.headers.get("content-length")
        if length is not None and not (length.isascii() and length.isdigit()):  # "²".isdigit() is True
            raise BadRequest("Content-Length is not a number")
        if length is not None and int(length) > MAX_FORM_BYTES:
            raise BadRequest("the form is too large")
        body = await _read_body(request, MAX_FORM_BYTES)
        if content_type != "application/x-www-form-urlencoded" and (body or content_type):
            raise BadRequest("send the form as application/x-www-form-urlencoded")
        values = parse_form(body, allowed | {"csrf"})
        submitted = values.pop("csrf", None)
        if request.state.auth != "bearer":
            origin = request.headers.get("origin")
            if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
                raise actions.ActionError(403, "This form was sent from another site (its Origin does not match).")
            if not self.guard.csrf_ok(request.cookies.get(CSRF_COOKIE), submitted):
                raise actions.ActionError(403, "The form's CSRF token is missing or stale: reload the page and "
                                               "try again.")
        return values

    def redirect(self, request: Request, path: str, **params: str) -> RedirectResponse:
        query = f"?{urlencode(params)}" if params else ""
        return RedirectResponse(request.scope.get("root_path", "") + path + query, status_code=303)

    # -- pages -----------------------------------------------------------------------------

    def _overview_context(self, overview: Overview) -> dict[str, Any]:
        since_hour = (overview.now - timedelta(hours=1)).astimezone(timezone.utc).isoformat()
        workers = [{**w, "liveness_class": _worker_liveness(w)[0], "liveness_text": _worker_liveness(w)[1]}
                   for w in overview.workers]

        def count_url(task: str, status: str) -> str:
            params = {"status": status.lower(), "task": task}
            if status in ("SUCCEEDED", "FAILED", "CANCELLED"):
                params["since"] = since_hour  # the table counts the last hour
            return "/jobs?" + urlencode(params)

        return dict(ov=overview, statuses=STATUS_ORDER, since_hour=since_hour, workers=workers, count_url=count_url,
                    ended=charts.ended_chart(overview.minutes), depth=charts.depth_chart(overview.minutes),
                    alive=sum(1 for w in workers if w["liveness_class"] == "good"),
                    refresh_ms=int(self.settings.refresh_seconds * 1000))

    async def overview(self, request: Request) -> Response:
        notice = parse_notice(check_names(request.query_params.multi_items(), NOTICE))
        overview = await run_in_threadpool(self.queries.overview)
        return self.render(request, "overview.html", notice=notice, **self._overview_context(overview))

    async def overview_fragment(self, request: Request) -> Response:
        check_names(request.query_params.multi_items(), frozenset())
        overview = await run_in_threadpool(self.queries.overview)
        return self.render(request, "_live.html", **self._overview_context(overview))

    async def jobs(self, request: Request) -> Response:
        values = check_names(request.query_params.multi_items(), JOB_LIST_PARAMS | NOTICE)
        notice = parse_notice(values)
        f = parse_filter(values)
        cursor = parse_cursor(values["cursor"], f.ended) if values.get("cursor", "").strip() else None
        page = await run_in_threadpool(self.queries.jobs, f, cursor, self.settings.page_size)
        next_url = None
        if page.next_cursor is not None:
            next_url = "/jobs?" + urlencode({**f.params(), "cursor": page.next_cursor.encode()})
        return self.render(request, "jobs.html", notice=notice, f=f, page=page, next_url=next_url,
                           first_url="/jobs?" + urlencode(f.params()), paged=cursor is not None,
                           tabs=_TABS, bulk_limit=self.settings.bulk_limit)

    async def job(self, request: Request) -> Response:
        notice = parse_notice(check_names(request.query_params.multi_items(), NOTICE))
        rid = parse_uuid(request.path_params["rid"], "the job rid")
        detail = await run_in_threadpool(self.queries.job, rid)
        if detail is None:
            return self.error(request, 404, f"No job {rid}: it may have been pruned from the archive.")
        row = detail.row
        payload: dict[str, Any] = {"state": "clear", "parameters": row.get("parameters"),
                                   "parameters_keyed": row.get("parameters_keyed"), "result": row.get("results")}
        if detail.encrypted:
            payload = {"state": "encrypted"}
            if self.settings.show_encrypted and self.q.keyring is not None:
                opened = await run_in_threadpool(self.q.get_job, rid)
                if opened.encrypted:
                    payload = {"state": "unreadable"}
                else:
                    payload = {"state": "decrypted", "parameters": opened.parameters,
                               "parameters_keyed": opened.parameters_keyed, "result": opened.result}
        return self.render(request, "job.html", notice=notice, d=detail, job=row, payload=payload,
                           origin=_origin(row.get("options")),
                           ended=row["status"] in ("SUCCEEDED", "FAILED", "CANCELLED"))

    async def schedules(self, request: Request) -> Response:
        notice = parse_notice(check_names(request.query_params.multi_items(), NOTICE))
        found = await run_in_threadpool(self.q.get_schedules)
        now = await run_in_threadpool(self.queries.db_now)
        return self.render(request, "schedules.html", notice=notice, schedules=found, now=now)

    # -- sign in and out -------------------------------------------------------------------

    async def login_page(self, request: Request) -> Response:
        if not self.guard.token_required:
            return self.redirect(request, "/")
        values = check_names(request.query_params.multi_items(), frozenset({"next", "notice"}))
        return self.render(request, "login.html", next=_safe_next(values.get("next", "/")), failed=False,
                           notice=parse_notice(values))

    async def login(self, request: Request) -> Response:
        if not self.guard.token_required:
            return self.redirect(request, "/")
        values = await self.form(request, frozenset({"token", "next"}), action=False)
        target = _safe_next(values.get("next", "/"))
        if not self.guard.token_matches(values.get("token")):
            await asyncio.sleep(0.3)  # guessing is slow, and a strong token makes it hopeless anyway
            return self.render(request, "login.html", status=401, next=target, failed=True)
        response = RedirectResponse(request.scope.get("root_path", "") + target, status_code=303)
        response.set_cookie(SESSION_COOKIE, self.guard.new_session(), max_age=SESSION_SECONDS, httponly=True,
                            samesite="strict", secure=request.url.scheme == "https", path="/")
        return response

    async def logout(self, request: Request) -> Response:
        await self.form(request, frozenset(), action=False)
        response = self.redirect(request, "/login", notice="signed-out")
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    # -- actions -----------------------------------------------------------------------------

    async def cancel(self, request: Request) -> Response:
        await self.form(request, frozenset())
        rid = parse_uuid(request.path_params["rid"], "the job rid")
        await run_in_threadpool(actions.cancel, self.q, rid)
        return self.redirect(request, f"/jobs/{rid}", notice="cancelled")

    async def requeue(self, request: Request) -> Response:
        await self.form(request, frozenset())
        rid = parse_uuid(request.path_params["rid"], "the job rid")
        new = await run_in_threadpool(actions.requeue, self.q, rid)
        return self.redirect(request, f"/jobs/{new.rid}", notice="requeued")

    async def stop_worker(self, request: Request) -> Response:
        await self.form(request, frozenset())
        rid = parse_uuid(request.path_params["rid"], "the worker rid")
        await run_in_threadpool(actions.stop_worker, self.q, rid)
        return self.redirect(request, "/", notice="stopping")

    async def schedule_action(self, request: Request) -> Response:
        values = await self.form(request, frozenset({"name", "action"}))
        name = parse_name(values.get("name", ""), "the schedule name")
        action = values.get("action", "")
        if action not in actions.SCHEDULE_ACTIONS:
            raise BadRequest(f"action must be one of {', '.join(actions.SCHEDULE_ACTIONS)}")
        job = await run_in_threadpool(actions.schedule, self.q, name, action)
        if job is not None:
            return self.redirect(request, f"/jobs/{job.rid}", notice="triggered")
        return self.redirect(request, "/schedules", notice={"pause": "paused", "resume": "resumed"}[action])

    async def bulk(self, request: Request) -> Response:
        values = await self.form(request, FILTER_FIELDS | {"action", "confirm"})
        action = values.pop("action", "")
        confirmed = values.pop("confirm", "") == "yes"
        f = parse_filter(values)
        if action == "cancel" and f.ended:
            raise BadRequest("ended jobs cannot be cancelled: choose an active status")
        if action == "requeue" and not f.ended:
            raise BadRequest("only ended jobs can be queued again: choose an ended status")
        if action not in ("cancel", "requeue"):
            raise BadRequest("action must be cancel or requeue")
        limit = self.settings.bulk_limit
        if not confirmed:
            if f.until is None:
                # Pin the selection: jobs that arrive after this page are not part of it.
                now = await run_in_threadpool(self.queries.db_now)
                f = JobFilter(f.status, f.task, f.since, now + timedelta(microseconds=1), f.rid, f.rid_range)
            selected = await run_in_threadpool(self.queries.selection, f, limit + 1)
            return self.render(request, "confirm.html", f=f, action=action, count=min(len(selected), limit),
                               more=len(selected) > limit, limit=limit)
        rids = await run_in_threadpool(self.queries.selection, f, limit)
        result = await run_in_threadpool(actions.bulk, self.q, action, rids)
        return self.render(request, "bulk_done.html", f=f, action=action, result=result,
                           back="/jobs?" + urlencode(f.params()))

    # -- errors --------------------------------------------------------------------------------

    async def on_bad_request(self, request: Request, exc: Exception) -> Response:
        return self.error(request, 400, str(exc))

    async def on_action_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, actions.ActionError)
        return self.error(request, exc.status, exc.message)

    async def on_http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        messages = {404: "There is no such page.", 405: "This address does not take that method."}
        return self.error(request, exc.status_code, messages.get(exc.status_code, str(exc.detail)))

    async def on_database_down(self, request: Request, exc: Exception) -> Response:
        return self.error(request, 503, f"PostgreSQL does not answer: {exc}")

    async def on_database_error(self, request: Request, exc: Exception) -> Response:
        # e.g. a read that ran into the statement timeout; the server's message names no secret
        log.warning("database error on %s %s: %s", request.method, request.url.path, exc)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return self.error(request, 503, f"PostgreSQL could not answer this page: {first}")

    async def on_job_gone(self, request: Request, exc: Exception) -> Response:
        return self.error(request, 404, f"{exc}: it may have been pruned from the archive.")

    async def on_unexpected(self, request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return PlainTextResponse("500: unexpected error (see the server's log)\n", status_code=500)


_TABS = (("active", "Active"), ("queued", "Queued"), ("scheduled", "Scheduled"), ("running", "Running"),
         ("ended", "Ended"), ("succeeded", "Succeeded"), ("failed", "Failed"), ("cancelled", "Cancelled"))


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it grows past ``limit``: a chunked body has no Content-Length to
    check first, and /login reads one before anyone has signed in."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BadRequest(f"the form is larger than {limit} bytes")
    return bytes(body)


def _safe_next(target: str) -> str:
    """Where to go after signing in: a path of this site only (never //host or a scheme)."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target or len(target) > 500:
        return "/"
    if any(ord(ch) < 32 for ch in target):
        return "/"
    return target


def create_app(q: Queuer, settings: WebSettings | None = None) -> Starlette:
    """The web app over a Queuer made with ``install=False, register=False``."""
    web = WebApp(q, settings or WebSettings())
    routes = [
        Route("/", web.overview, methods=["GET"]),
        Route("/fragments/overview", web.overview_fragment, methods=["GET"]),
        Route("/jobs", web.jobs, methods=["GET"]),
        Route("/jobs/bulk", web.bulk, methods=["POST"]),
        Route("/jobs/{rid}", web.job, methods=["GET"]),
        Route("/jobs/{rid}/cancel", web.cancel, methods=["POST"]),
        Route("/jobs/{rid}/requeue", web.requeue, methods=["POST"]),
        Route("/workers/{rid}/stop", web.stop_worker, methods=["POST"]),
        Route("/schedules", web.schedules, methods=["GET"]),
        Route("/schedules/action", web.schedule_action, methods=["POST"]),
        Route("/login", web.login_page, methods=["GET"]),
        Route("/login", web.login, methods=["POST"]),
        Route("/logout", web.logout, methods=["POST"]),
        Mount("/static", app=StaticFiles(packages=[("queuer.web", "static")]), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(BaseHTTPMiddleware, dispatch=web.guard_request)],
        exception_handlers={
            BadRequest: web.on_bad_request,
            actions.ActionError: web.on_action_error,
            HTTPException: web.on_http_error,
            DatabaseUnreachableError: web.on_database_down,
            psycopg.Error: web.on_database_error,
            JobNotFoundError: web.on_job_gone,
            Exception: web.on_unexpected,
        },
    )
    app.state.web = web
    return app
