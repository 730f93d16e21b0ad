"""The web app: routes, the request guard, rendering and error pages.

Handlers are async; every database call runs in Starlette's thread pool
through the Queuer (whose pool bounds the connections this server holds).
The guard is a plain ASGI middleware around everything: it reads forwarding
headers from trusted proxies, decides who is asking, slows token guessing,
puts the security headers on every response, and turns an unexpected
exception into an ordinary 500 page (the connection stays open).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar
from urllib.parse import urlencode
from uuid import UUID

import jinja2
import psycopg
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from queuer.client.queuer import Queuer
from queuer.errors import DatabaseUnreachableError, JobNotFoundError
from queuer.payload.serialization import Undecodable
from queuer.web import actions, charts
from queuer.web.params import (
    AUDIT_PARAMS,
    JOB_LIST_PARAMS,
    MAX_FORM_BYTES,
    BadRequest,
    JobFilter,
    check_names,
    parse_audit,
    parse_cursor,
    parse_filter,
    parse_form,
    parse_name,
    parse_notice,
    parse_uuid,
)
from queuer.web.proxy import ProxyError, TrustedProxies, carries_proxy_headers, parse_public_origin, rewritten_scope
from queuer.web.queries import STATUS_ORDER, Overview, WebQueries
from queuer.web.security import (
    CSRF_COOKIE,
    OPERATOR,
    READER,
    SESSION_COOKIE,
    SESSION_SECONDS,
    Guard,
    host_name,
    is_loopback_address,
)
from queuer.web.store import AUDIT_ACTIONS, WebStore
from queuer.web.throttle import Throttle

log = logging.getLogger("queuer.web")
T = TypeVar("T")

NOTICE = frozenset({"notice"})
FILTER_FIELDS = frozenset({"status", "task", "since", "until", "rid"})
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = (
    ("content-security-policy", CSP),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "same-origin"),  # no-referrer would make the Origin of our own forms "null"
)
#: the most characters of a stored error, or of printed arguments or a result, that a page shows
MAX_SHOWN = 64_000
UNTRUSTED_LOG_EVERY = 60.0  # seconds between two log lines about the same untrusted proxy


@dataclass(frozen=True)
class WebSettings:
    read_only: bool = False
    #: show decrypted arguments and results (needs the key in QUEUER_ENCRYPTION_KEY too)
    show_encrypted: bool = False
    #: the operator's token (QUEUER_WEB_TOKEN): every page and every action
    token: str | None = None
    #: a reader's token (QUEUER_WEB_READ_TOKEN): every page, no action
    read_token: str | None = None
    #: peers whose X-Forwarded-For/-Proto/-Host are believed (addresses or networks)
    trusted_proxies: tuple[str, ...] = ()
    #: the origin browsers see behind a proxy (https://queue.example.com): forms may come from it
    public_origin: str | None = None
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


def _capped(text: str | None, limit: int = MAX_SHOWN) -> str:
    """At most ``limit`` characters, and a marker that says how many more there were."""
    text = text or ""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n… [truncated: {len(text) - limit:,} more characters not shown]"


def _pretty(value: Any) -> str:
    """Arguments or a result as indented JSON, capped; a value that cannot be read says why."""
    if isinstance(value, Undecodable):
        return f"not decodable: {value.reason}"
    try:
        text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)
    except RecursionError:
        try:  # the C encoder goes deeper than the indenting one
            text = json.dumps(value, ensure_ascii=False, default=str)
        except RecursionError:
            return "not shown: nested too deeply to print"
    return _capped(text)


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
                       number=lambda n: f"{n:,}", capped=_capped)
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


def _cookie_header(name: str, value: str, secure: bool) -> bytes:
    response = Response()
    response.set_cookie(name, value, httponly=True, samesite="strict", secure=secure, path="/")
    return response.raw_headers[-1][1]


class WebApp:
    def __init__(self, q: Queuer, settings: WebSettings) -> None:
        self.q = q
        self.settings = settings
        self.queries = WebQueries(q.db)
        self.store = WebStore(q.db)
        self.guard = Guard(settings.token, settings.read_token, settings.read_only)
        self.proxies = TrustedProxies(settings.trusted_proxies)
        self.public_origin = parse_public_origin(settings.public_origin)
        self.throttle = Throttle()
        self.env = _environment()
        self._untrusted_logged: dict[str, float] = {}
        self._refusals_logged = 0.0

    # -- rendering -----------------------------------------------------------------------

    def render(self, request: Request, template: str, status: int = 200, headers: dict[str, str] | None = None,
               **context: Any) -> HTMLResponse:
        state = request.state
        nonce = getattr(state, "csrf_nonce", "") or ""
        base = request.scope.get("root_path", "")
        role = getattr(state, "role", None)
        page = self.env.get_template(template).render(
            base=base,
            csrf=self.guard.csrf_token(nonce) if nonce else "",
            read_only=self.settings.read_only or role == READER,
            reader=role == READER,
            signed_in=getattr(state, "auth", None) == "session",
            # the schema's name is for those who may see the queue
            schema=self.q.db.schema if getattr(state, "auth", None) else None,
            path=request.url.path,
            notice=context.pop("notice", None),
            **context,
        )
        return HTMLResponse(page, status_code=status, headers=headers)

    def error(self, request: Request, status: int, message: str, headers: dict[str, str] | None = None) -> HTMLResponse:
        titles = {400: "Bad request", 401: "Sign in", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
                  409: "Conflict", 413: "Too large", 415: "Unsupported form", 429: "Too many attempts",
                  500: "Unexpected error", 503: "Database unavailable"}
        return self.render(request, "error.html", status=status, title=titles.get(status, "Error"),
                           message=message, code=status, headers=headers)

    # -- who is asking -------------------------------------------------------------------

    def secure(self, request: Request) -> bool:
        """Whether the browser talks https to us (directly, through a trusted proxy, or per the public origin)."""
        return request.url.scheme == "https" or (self.public_origin or "").startswith("https:")

    def allowed_origins(self, request: Request) -> set[str]:
        own = f"{request.url.scheme}://{request.url.netloc}"
        return {own, self.public_origin} if self.public_origin else {own}

    @staticmethod
    def credential(request: Request) -> str:
        """How the request proved who it is, for the audit log (never the token itself)."""
        auth, role = getattr(request.state, "auth", None), getattr(request.state, "role", None)
        if auth == "loopback":
            return "loopback (no token)"
        if auth == "bearer":
            return f"{role} token (Bearer)"
        if auth == "session":
            return f"{role} session"
        return "none"

    async def deny(self, request: Request) -> Response | None:
        """A response that refuses the request, or None to let it through (``request.state`` says as whom)."""
        state = request.state
        if not self.guard.token_required:
            return self._deny_without_token(request)
        if _path(request).startswith("/static/"):
            return None
        token = Guard.bearer(request.headers.get("authorization"))
        if token is not None:
            refused = self.too_many(request)
            if refused is not None:
                return refused
            kind = self.guard.token_kind(token)
            if kind is None:
                await self.failed(request, "Bearer token")
                return PlainTextResponse("401: that Bearer token is not this server's\n", status_code=401,
                                         headers={"WWW-Authenticate": 'Bearer realm="queuer", error="invalid_token"'})
            state.auth, state.role = "bearer", kind
            return None
        session = self.guard.session(request.cookies.get(SESSION_COOKIE))
        if session is not None and await run_in_threadpool(self.store.session_valid, session.id, session.epoch):
            state.auth, state.role, state.session = "session", session.kind, session
            return None
        if _path(request) == "/login":
            return None
        if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
            target = _path(request) + (f"?{request.url.query}" if request.url.query else "")
            return self.render(request, "login.html", status=401, next=_safe_next(target), failed=False,
                               message=None, headers={"WWW-Authenticate": 'Bearer realm="queuer"'})
        return PlainTextResponse("401: send Authorization: Bearer <QUEUER_WEB_TOKEN>, or sign in at /login\n",
                                 status_code=401, headers={"WWW-Authenticate": 'Bearer realm="queuer"'})

    def _deny_without_token(self, request: Request) -> Response | None:
        state = request.state
        if state.untrusted_proxy_header is not None:
            # A proxy on this machine would otherwise show a token-less page to everyone who reaches the proxy.
            peer = state.peer or "?"
            now = time.monotonic()
            if now - self._untrusted_logged.get(peer, -UNTRUSTED_LOG_EVERY) >= UNTRUSTED_LOG_EVERY:
                self._untrusted_logged[peer] = now
                if len(self._untrusted_logged) > 1000:
                    self._untrusted_logged.clear()
                log.warning("refused a request from %s through a proxy (it carries %s) that is not trusted: "
                            "without QUEUER_WEB_TOKEN this server answers no proxied request (set a token, and "
                            "--trusted-proxy for the proxy's address)", peer, state.untrusted_proxy_header)
            return self.error(request, 403, "This server has no token (QUEUER_WEB_TOKEN) and this request came "
                                            f"through a proxy (it carries {state.untrusted_proxy_header}) that the "
                                            "server does not trust: it would open the page to everyone who "
                                            "reaches the proxy. Set a token to serve the UI through a proxy.")
        if state.forwarded_by is not None and state.forwarded_client is None:
            return self.error(request, 403, "This request came from a trusted proxy without X-Forwarded-For: "
                                            "without a token the server must know the client's address.")
        if not is_loopback_address(state.client):
            return self.error(request, 403, "Without QUEUER_WEB_TOKEN this server answers only this machine "
                                            "(loopback). Set a token to open it to the network.")
        # Both the Host as forwarded and as received: a page whose name was rebound to 127.0.0.1
        # could otherwise pose as the trusted proxy on this machine and name itself "localhost".
        hosts = (request.headers.get("host", ""), state.received_host)
        if not all(is_loopback_address(host_name(host)) for host in hosts):
            return self.error(request, 403, "Without QUEUER_WEB_TOKEN this page is served only under a "
                                            "loopback name (localhost, 127.0.0.1, [::1]).")
        state.auth, state.role = "loopback", OPERATOR
        return None

    def too_many(self, request: Request) -> Response | None:
        """A 429 while failed attempts queue up too long to examine another one, else None."""
        retry = self.throttle.retry_after()
        if retry is None:
            return None
        now = time.monotonic()
        if now - self._refusals_logged >= 10:
            self._refusals_logged = now
            log.warning("refusing token attempts unexamined (from %s, among others): failed attempts are queued "
                        "for more than %.0f s; %d refused since start", request.state.client,
                        self.throttle.max_backlog, self.throttle.refused)
        message = f"Too many failed sign-ins on this server: try again in {retry} s."
        headers = {"Retry-After": str(retry)}
        if "text/html" in request.headers.get("accept", ""):
            return self.error(request, 429, message, headers=headers)
        return PlainTextResponse(f"429: {message}\n", status_code=429, headers=headers)

    async def failed(self, request: Request, what: str) -> None:
        """A wrong token: logged (with the client's address, never the token), then answered late."""
        client = request.state.client
        count, wait = self.throttle.failure(client)
        log.warning("failed %s from %s (%d from this address recently); answering in %.2f s",
                    what, client, count, wait)
        await asyncio.sleep(wait)

    async def form(self, request: Request, allowed: frozenset[str], action: bool = True) -> dict[str, str]:
        """The POSTed form, after the read-only and CSRF checks; without the csrf field."""
        if action and self.settings.read_only:
            raise actions.ActionError(403, "This server was started with --read-only: it changes nothing.")
        if action and request.state.role == READER:
            raise actions.ActionError(403, "Signed in with the read-only token (QUEUER_WEB_READ_TOKEN): it shows "
                                           "everything and changes nothing.")
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
            if origin is not None and origin not in self.allowed_origins(request):
                raise actions.ActionError(403, "This form was sent from another site (its Origin does not match"
                                               f"{'' if self.public_origin else '; behind a proxy, set --public-origin'}).")
            if not self.guard.csrf_ok(request.cookies.get(CSRF_COOKIE), submitted):
                raise actions.ActionError(403, "The form's CSRF token is missing or stale: reload the page and "
                                               "try again.")
        return values

    def redirect(self, request: Request, path: str, **params: str) -> RedirectResponse:
        query = f"?{urlencode(params)}" if params else ""
        return RedirectResponse(request.scope.get("root_path", "") + path + query, status_code=303)

    # -- the audit log ----------------------------------------------------------------------

    async def audit(self, request: Request, action: str, target: str | None = None, rids: Sequence[UUID] = (),
                    outcome: str = "done") -> None:
        """Record an action done through the UI; a failure to record is logged, and the action stands."""
        client, credential = request.state.client or "?", self.credential(request)
        log.info("audit: %s by %s (%s)%s: %s", action, client, credential, f" on {target!r}" if target else "",
                 outcome)
        try:
            await run_in_threadpool(self.store.record, client, credential, action, target, rids, outcome)
        except Exception:
            log.exception("could not write the audit log entry for %s by %s", action, client)

    async def act(self, request: Request, action: str, call: Callable[[], T], target: str | None = None,
                  rids: Sequence[UUID] = ()) -> T:
        """Run an action in the thread pool; an action refused (404, 409...) is recorded too."""
        try:
            return await run_in_threadpool(call)
        except actions.ActionError as exc:
            await self.audit(request, action, target, rids, f"refused ({exc.status}): {exc.message}")
            raise

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
                           origin=_origin(row.get("options")), undecodable=detail.undecodable,
                           ended=row["status"] in ("SUCCEEDED", "FAILED", "CANCELLED"))

    async def schedules(self, request: Request) -> Response:
        notice = parse_notice(check_names(request.query_params.multi_items(), NOTICE))
        found = await run_in_threadpool(self.q.get_schedules)
        now = await run_in_threadpool(self.queries.db_now)
        return self.render(request, "schedules.html", notice=notice, schedules=found, now=now)

    async def audit_page(self, request: Request) -> Response:
        values = check_names(request.query_params.multi_items(), AUDIT_PARAMS)
        f, cursor = parse_audit(values, AUDIT_ACTIONS)
        page = await run_in_threadpool(self.store.page, f.action, f.rid, cursor, self.settings.page_size)
        next_url = None
        if page.next_cursor is not None:
            next_url = "/audit?" + urlencode({**f.params(), "cursor": str(page.next_cursor)})
        return self.render(request, "audit.html", f=f, page=page, next_url=next_url, paged=cursor is not None,
                           first_url="/audit?" + urlencode(f.params()), audit_actions=AUDIT_ACTIONS)

    # -- sign in and out -------------------------------------------------------------------

    async def login_page(self, request: Request) -> Response:
        if not self.guard.token_required:
            return self.redirect(request, "/")
        values = check_names(request.query_params.multi_items(), frozenset({"next", "notice"}))
        return self.render(request, "login.html", next=_safe_next(values.get("next", "/")), failed=False,
                           message=None, notice=parse_notice(values))

    async def login(self, request: Request) -> Response:
        if not self.guard.token_required:
            return self.redirect(request, "/")
        values = await self.form(request, frozenset({"token", "next"}), action=False)
        target = _safe_next(values.get("next", "/"))
        refused = self.too_many(request)
        if refused is not None:
            return refused
        kind = self.guard.token_kind(values.get("token"))
        if kind is None:
            await self.failed(request, "sign-in")
            return self.render(request, "login.html", status=401, next=target, failed=True, message=None)
        # Its past failures are kept (and forgotten only after a quiet spell): a right reader token
        # must not reset the count of guesses at the operator's.
        epoch = await run_in_threadpool(self.store.epoch)
        cookie, session = self.guard.new_session(kind, epoch)
        request.state.auth, request.state.role, request.state.session = "session", kind, session
        await self.audit(request, "sign-in")
        response = RedirectResponse(request.scope.get("root_path", "") + target, status_code=303)
        response.set_cookie(SESSION_COOKIE, cookie, max_age=SESSION_SECONDS, httponly=True,
                            samesite="strict", secure=self.secure(request), path="/")
        return response

    async def logout(self, request: Request) -> Response:
        await self.form(request, frozenset(), action=False)
        session = getattr(request.state, "session", None)
        if session is not None:
            # The cookie is refused from now on, wherever it is replayed from.
            expires = datetime.fromtimestamp(session.expires, tz=timezone.utc)
            await run_in_threadpool(self.store.revoke, session.id, expires)
            await self.audit(request, "sign-out")
        response = self.redirect(request, "/login", notice="signed-out")
        response.delete_cookie(SESSION_COOKIE, path="/", secure=self.secure(request), httponly=True,
                               samesite="strict")
        return response

    # -- actions -----------------------------------------------------------------------------

    async def cancel(self, request: Request) -> Response:
        await self.form(request, frozenset())
        rid = parse_uuid(request.path_params["rid"], "the job rid")
        await self.act(request, "cancel", lambda: actions.cancel(self.q, rid), rids=[rid])
        await self.audit(request, "cancel", rids=[rid])
        return self.redirect(request, f"/jobs/{rid}", notice="cancelled")

    async def requeue(self, request: Request) -> Response:
        await self.form(request, frozenset())
        rid = parse_uuid(request.path_params["rid"], "the job rid")
        new = await self.act(request, "requeue", lambda: actions.requeue(self.q, rid), rids=[rid])
        await self.audit(request, "requeue", rids=[rid, new.rid], outcome=f"done: added again as {new.rid}")
        return self.redirect(request, f"/jobs/{new.rid}", notice="requeued")

    async def stop_worker(self, request: Request) -> Response:
        await self.form(request, frozenset())
        rid = parse_uuid(request.path_params["rid"], "the worker rid")
        worker = await self.act(request, "stop-worker", lambda: actions.stop_worker(self.q, rid),
                                target=f"worker {rid}")
        await self.audit(request, "stop-worker", target=f"worker {rid} ({worker.name})")
        return self.redirect(request, "/", notice="stopping")

    async def schedule_action(self, request: Request) -> Response:
        values = await self.form(request, frozenset({"name", "action"}))
        name = parse_name(values.get("name", ""), "the schedule name")
        action = values.get("action", "")
        if action not in actions.SCHEDULE_ACTIONS:
            raise BadRequest(f"action must be one of {', '.join(actions.SCHEDULE_ACTIONS)}")
        what = f"schedule-{action}"
        job = await self.act(request, what, lambda: actions.schedule(self.q, name, action), target=name)
        if job is not None:
            await self.audit(request, what, target=name, rids=[job.rid], outcome=f"done: added job {job.rid}")
            return self.redirect(request, f"/jobs/{job.rid}", notice="triggered")
        await self.audit(request, what, target=name)
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
        await self.audit(request, f"bulk-{action}", target=f.describe(), rids=result.done,
                         outcome=f"{len(result.done)} done, {len(result.skipped)} skipped")
        return self.render(request, "bulk_done.html", f=f, action=action, result=result,
                           back="/jobs?" + urlencode(f.params()))

    # -- errors --------------------------------------------------------------------------------

    async def on_error(self, request: Request, exc: Exception) -> Response:
        """The page for an exception: what the operator can act on, or a 500 (logged with its traceback)."""
        if isinstance(exc, (BadRequest, ProxyError)):
            return self.error(request, 400, str(exc))
        if isinstance(exc, actions.ActionError):
            if exc.status == 403:
                log.warning("refused %s %s from %s (%s): %s", request.method, request.url.path,
                            request.state.client, self.credential(request), exc.message)
            return self.error(request, exc.status, exc.message)
        if isinstance(exc, HTTPException):
            messages = {404: "There is no such page.", 405: "This address does not take that method."}
            return self.error(request, exc.status_code, messages.get(exc.status_code, str(exc.detail)))
        if isinstance(exc, DatabaseUnreachableError):
            return self.error(request, 503, f"PostgreSQL does not answer: {exc}")
        if isinstance(exc, psycopg.Error):
            # e.g. a read that ran into the statement timeout; the server's message names no secret
            log.warning("database error on %s %s: %s", request.method, request.url.path, exc)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return self.error(request, 503, f"PostgreSQL could not answer this page: {first}")
        if isinstance(exc, JobNotFoundError):
            return self.error(request, 404, f"{exc}: it may have been pruned from the archive.")
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return self.error(request, 500, "Unexpected error: the server's log has the details.")


class GuardMiddleware:
    """Around the whole app: forwarding headers, the guard, security headers, and no escaping exception."""

    def __init__(self, app: ASGIApp, web: WebApp) -> None:
        self.app = app
        self.web = web

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        web = self.web
        peer = scope["client"][0] if scope.get("client") else None
        # The Host the connection itself carried, before a trusted proxy's X-Forwarded-Host replaces it.
        received_host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
        proxy_header = carries_proxy_headers(scope["headers"])
        forwarding_error: ProxyError | None = None
        forwarded_by = forwarded_client = None
        if proxy_header is not None and web.proxies.trusts(peer):
            try:
                forwarding = web.proxies.forwarding(scope["headers"])
                scope = rewritten_scope(scope, forwarding)
                forwarded_by, forwarded_client = peer, forwarding.client
            except ProxyError as exc:
                forwarding_error = exc
        request = Request(scope, receive)
        state = request.state
        state.peer, state.forwarded_by, state.forwarded_client = peer, forwarded_by, forwarded_client
        state.received_host = received_host
        state.untrusted_proxy_header = proxy_header if forwarded_by is None and forwarding_error is None else None
        state.client = scope["client"][0] if scope.get("client") else None
        state.auth = state.role = state.session = None
        nonce = request.cookies.get(CSRF_COOKIE)
        fresh = None
        if not nonce or len(nonce) > 100:
            fresh = nonce = web.guard.new_csrf_nonce()
        state.csrf_nonce = nonce
        static = _path(request).startswith("/static/")
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS:
                    headers.setdefault(name, value)
                if not static:
                    headers.setdefault("cache-control", "no-store")
                if fresh is not None:
                    headers.append("set-cookie", _cookie_header(CSRF_COOKIE, fresh, web.secure(request)).decode("latin-1"))
            await send(message)

        try:
            if forwarding_error is not None:
                raise forwarding_error
            denied = await web.deny(request)
            if denied is not None:
                await denied(scope, receive, send_with_headers)
                return
            await self.app(scope, receive, send_with_headers)
        except Exception as exc:
            if started:  # too late for a page of our own: the client sees a cut response
                log.error("error after the response began on %s %s", request.method, request.url.path, exc_info=exc)
                raise
            try:
                response = await web.on_error(request, exc)
            except Exception:
                log.exception("could not render the error page for %s %s", request.method, request.url.path)
                response = PlainTextResponse("500: unexpected error (see the server's log)\n", status_code=500)
            await response(scope, receive, send_with_headers)


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
        Route("/audit", web.audit_page, methods=["GET"]),
        Route("/login", web.login_page, methods=["GET"]),
        Route("/login", web.login, methods=["POST"]),
        Route("/logout", web.logout, methods=["POST"]),
        Mount("/static", app=StaticFiles(packages=[("queuer.web", "static")]), name="static"),
    ]
    # Exceptions the pages expect become their pages here; any other reaches GuardMiddleware, which
    # answers a 500 page itself (Starlette's own handler would re-raise it and the server drop the connection).
    handled = (BadRequest, actions.ActionError, HTTPException, DatabaseUnreachableError, psycopg.Error,
               JobNotFoundError)
    app = Starlette(
        routes=routes,
        middleware=[Middleware(GuardMiddleware, web=web)],
        exception_handlers={kind: web.on_error for kind in handled},
    )
    app.state.web = web
    return app


def _path(request: Request) -> str:
    """The request's path as the ASGI server parsed it from the request line, never rebuilt from Host."""
    return str(request.scope.get("path", ""))
