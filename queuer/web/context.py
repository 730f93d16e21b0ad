"""What every part of one web app shares: the Queuer, the settings, the reads and the store, the tokens,
the throttle, and the few request-level services more than one part uses (who is asking, the audit log,
the answer to a wrong token)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from urllib.parse import urlencode
from uuid import UUID

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from queuer.client.queuer import Queuer
from queuer.web.proxy import TrustedProxies, parse_public_origin
from queuer.web.reads import WebReads
from queuer.web.render import Renderer
from queuer.web.security import Guard
from queuer.web.settings import WebSettings
from queuer.web.store import WebStore
from queuer.web.throttle import Throttle

log = logging.getLogger("queuer.web")


class WebContext:
    def __init__(self, q: Queuer, settings: WebSettings) -> None:
        self.q = q
        self.settings = settings
        self.reads = WebReads(q.db)
        self.store = WebStore(q.db)
        self.tokens = Guard(settings.token, settings.read_token, settings.read_only)
        self.proxies = TrustedProxies(settings.trusted_proxies)
        self.public_origin = parse_public_origin(settings.public_origin)
        self.throttle = Throttle()
        self.views = Renderer(self.tokens, q.db.schema, settings.read_only)
        self._refusals_logged = 0.0

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

    @staticmethod
    def redirect(request: Request, path: str, **params: str) -> RedirectResponse:
        query = f"?{urlencode(params)}" if params else ""
        return RedirectResponse(request.scope.get("root_path", "") + path + query, status_code=303)

    # -- the audit log --------------------------------------------------------------------

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

    # -- wrong tokens (a Bearer header or the sign-in form) ---------------------------------

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
            return self.views.error(request, 429, message, headers=headers)
        return PlainTextResponse(f"429: {message}\n", status_code=429, headers=headers)

    async def failed(self, request: Request, what: str) -> None:
        """A wrong token: logged (with the client's address, never the token), then answered late."""
        client = request.state.client
        count, wait = self.throttle.failure(client)
        log.warning("failed %s from %s (%d from this address recently); answering in %.2f s",
                    what, client, count, wait)
        await asyncio.sleep(wait)
