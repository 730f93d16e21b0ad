"""The guard around the whole app: who is asking, and whether they may.

A plain ASGI middleware. It reads forwarding headers from trusted proxies
only, puts on ``request.state`` who is asking (``client``, ``auth``, ``role``,
``session``, the CSRF nonce), seeds the CSRF cookie, slows token guessing, and
refuses what is not allowed. Every decision is on the path as the ASGI server
parsed it from the request line, never rebuilt from Host. An exception from
anything inside becomes an ordinary error page (the connection stays open).
"""

from __future__ import annotations

import logging
import time

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from queuer.web.context import WebContext
from queuer.web.errors import ErrorPages
from queuer.web.headers import is_static
from queuer.web.proxy import ProxyError, carries_proxy_headers, rewritten_scope
from queuer.web.security import CSRF_COOKIE, OPERATOR, SESSION_COOKIE, Guard, host_name, is_loopback_address
from queuer.web.signin import login_form, safe_next

log = logging.getLogger("queuer.web")
UNTRUSTED_LOG_EVERY = 60.0  # seconds between two log lines about the same untrusted proxy


def _cookie_header(name: str, value: str, secure: bool) -> bytes:
    response = Response()
    response.set_cookie(name, value, httponly=True, samesite="strict", secure=secure, path="/")
    return response.raw_headers[-1][1]


class GuardMiddleware:
    def __init__(self, app: ASGIApp, web: WebContext, errors: ErrorPages) -> None:
        self.app = app
        self.web = web
        self.errors = errors
        self._untrusted_logged: dict[str, float] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope, forwarding_error = self._as_sent(scope)
        request = Request(scope, receive)
        nonce = request.cookies.get(CSRF_COOKIE)
        fresh = None
        if not nonce or len(nonce) > 100:
            fresh = nonce = self.web.tokens.new_csrf_nonce()
        request.state.csrf_nonce = nonce
        started = False

        async def send_with_cookie(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if fresh is not None:
                    cookie = _cookie_header(CSRF_COOKIE, fresh, self.web.secure(request))
                    MutableHeaders(scope=message).append("set-cookie", cookie.decode("latin-1"))
            await send(message)

        try:
            if forwarding_error is not None:
                raise forwarding_error
            denied = await self.deny(request)
            if denied is not None:
                await denied(scope, receive, send_with_cookie)
                return
            await self.app(scope, receive, send_with_cookie)
        except Exception as exc:
            if started:  # too late for a page of our own: the client sees a cut response
                log.error("error after the response began on %s %s", request.method, request.url.path, exc_info=exc)
                raise
            try:
                response = await self.errors.on_error(request, exc)
            except Exception:
                log.exception("could not render the error page for %s %s", request.method, request.url.path)
                response = PlainTextResponse("500: unexpected error (see the server's log)\n", status_code=500)
            await response(scope, receive, send_with_cookie)

    def _as_sent(self, scope: Scope) -> tuple[Scope, ProxyError | None]:
        """The scope as the client sent the request (per a trusted proxy), with who is asking on its state."""
        peer = scope["client"][0] if scope.get("client") else None
        # The Host the connection itself carried, before a trusted proxy's X-Forwarded-Host replaces it.
        received_host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
        proxy_header = carries_proxy_headers(scope["headers"])
        error: ProxyError | None = None
        forwarded_by = forwarded_client = None
        if proxy_header is not None and self.web.proxies.trusts(peer):
            try:
                forwarding = self.web.proxies.forwarding(scope["headers"])
                scope = rewritten_scope(scope, forwarding)
                forwarded_by, forwarded_client = peer, forwarding.client
            except ProxyError as exc:
                error = exc
        state = Request(scope).state
        state.peer, state.forwarded_by, state.forwarded_client = peer, forwarded_by, forwarded_client
        state.received_host = received_host
        state.untrusted_proxy_header = proxy_header if forwarded_by is None and error is None else None
        state.client = scope["client"][0] if scope.get("client") else None
        state.auth = state.role = state.session = None
        return scope, error

    async def deny(self, request: Request) -> Response | None:
        """A response that refuses the request, or None to let it through (``request.state`` says as whom)."""
        web, state = self.web, request.state
        if not web.tokens.token_required:
            return self._deny_without_token(request)
        if is_static(request.scope):
            return None
        token = Guard.bearer(request.headers.get("authorization"))
        if token is not None:
            refused = web.too_many(request)
            if refused is not None:
                return refused
            kind = web.tokens.token_kind(token)
            if kind is None:
                await web.failed(request, "Bearer token")
                return PlainTextResponse("401: that Bearer token is not this server's\n", status_code=401,
                                         headers={"WWW-Authenticate": 'Bearer realm="queuer", error="invalid_token"'})
            state.auth, state.role = "bearer", kind
            return None
        session = web.tokens.session(request.cookies.get(SESSION_COOKIE))
        if session is not None and await run_in_threadpool(web.store.session_valid, session.id, session.epoch):
            state.auth, state.role, state.session = "session", session.kind, session
            return None
        path = str(request.scope.get("path", ""))
        if path == "/login":
            return None
        if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
            target = path + (f"?{request.url.query}" if request.url.query else "")
            return login_form(web, request, safe_next(target), status=401,
                              headers={"WWW-Authenticate": 'Bearer realm="queuer"'})
        return PlainTextResponse("401: send Authorization: Bearer <QUEUER_WEB_TOKEN>, or sign in at /login\n",
                                 status_code=401, headers={"WWW-Authenticate": 'Bearer realm="queuer"'})

    def _deny_without_token(self, request: Request) -> Response | None:
        state, error = request.state, self.web.views.error
        if state.untrusted_proxy_header is not None:
            # A proxy on this machine would otherwise show a token-less page to everyone who reaches the proxy.
            self._log_untrusted(state.peer or "?", state.untrusted_proxy_header)
            return error(request, 403, "This server has no token (QUEUER_WEB_TOKEN) and this request came "
                                       f"through a proxy (it carries {state.untrusted_proxy_header}) that the "
                                       "server does not trust: it would open the page to everyone who "
                                       "reaches the proxy. Set a token to serve the UI through a proxy.")
        if state.forwarded_by is not None and state.forwarded_client is None:
            return error(request, 403, "This request came from a trusted proxy without X-Forwarded-For: "
                                       "without a token the server must know the client's address.")
        if not is_loopback_address(state.client):
            return error(request, 403, "Without QUEUER_WEB_TOKEN this server answers only this machine "
                                       "(loopback). Set a token to open it to the network.")
        # Both the Host as forwarded and as received: a page whose name was rebound to 127.0.0.1
        # could otherwise pose as the trusted proxy on this machine and name itself "localhost".
        hosts = (request.headers.get("host", ""), state.received_host)
        if not all(is_loopback_address(host_name(host)) for host in hosts):
            return error(request, 403, "Without QUEUER_WEB_TOKEN this page is served only under a "
                                       "loopback name (localhost, 127.0.0.1, [::1]).")
        state.auth, state.role = "loopback", OPERATOR
        return None

    def _log_untrusted(self, peer: str, header: str) -> None:
        """At most one line a minute per proxy: every request through it is refused."""
        now = time.monotonic()
        if now - self._untrusted_logged.get(peer, -UNTRUSTED_LOG_EVERY) < UNTRUSTED_LOG_EVERY:
            return
        self._untrusted_logged[peer] = now
        if len(self._untrusted_logged) > 1000:
            self._untrusted_logged.clear()
        log.warning("refused a request from %s through a proxy (it carries %s) that is not trusted: without "
                    "QUEUER_WEB_TOKEN this server answers no proxied request (set a token, and --trusted-proxy "
                    "for the proxy's address)", peer, header)
