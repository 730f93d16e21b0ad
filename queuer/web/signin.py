"""Signing in with a token through the form, and out: the session cookie."""

from __future__ import annotations

from datetime import datetime, timezone

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from queuer.web.context import WebContext
from queuer.web.forms import read_form
from queuer.web.params import check_names, parse_notice
from queuer.web.security import SESSION_COOKIE, SESSION_SECONDS


def safe_next(target: str) -> str:
    """Where to go after signing in: a path of this site only (never //host or a scheme)."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target or len(target) > 500:
        return "/"
    if any(ord(ch) < 32 for ch in target):
        return "/"
    return target


def login_form(web: WebContext, request: Request, target: str, status: int = 200, failed: bool = False,
               notice: str | None = None, headers: dict[str, str] | None = None) -> HTMLResponse:
    return web.views.render(request, "login.html", status=status, next=target, failed=failed, message=None,
                            notice=notice, headers=headers)


class SignIn:
    def __init__(self, web: WebContext) -> None:
        self.web = web

    async def login_page(self, request: Request) -> Response:
        if not self.web.tokens.token_required:
            return self.web.redirect(request, "/")
        values = check_names(request.query_params.multi_items(), frozenset({"next", "notice"}))
        return login_form(self.web, request, safe_next(values.get("next", "/")), notice=parse_notice(values))

    async def login(self, request: Request) -> Response:
        web = self.web
        if not web.tokens.token_required:
            return web.redirect(request, "/")
        values = await read_form(web, request, frozenset({"token", "next"}), action=False)
        target = safe_next(values.get("next", "/"))
        refused = web.too_many(request)
        if refused is not None:
            return refused
        kind = web.tokens.token_kind(values.get("token"))
        if kind is None:
            await web.failed(request, "sign-in")
            return login_form(web, request, target, status=401, failed=True)
        # Its past failures are kept (and forgotten only after a quiet spell): a right reader token
        # must not reset the count of guesses at the operator's.
        epoch = await run_in_threadpool(web.store.epoch)
        cookie, session = web.tokens.new_session(kind, epoch)
        request.state.auth, request.state.role, request.state.session = "session", kind, session
        await web.audit(request, "sign-in")
        response = RedirectResponse(request.scope.get("root_path", "") + target, status_code=303)
        response.set_cookie(SESSION_COOKIE, cookie, max_age=SESSION_SECONDS, httponly=True,
                            samesite="strict", secure=web.secure(request), path="/")
        return response

    async def logout(self, request: Request) -> Response:
        web = self.web
        await read_form(web, request, frozenset(), action=False)
        session = getattr(request.state, "session", None)
        if session is not None:
            # The cookie is refused from now on, wherever it is replayed from.
            expires = datetime.fromtimestamp(session.expires, tz=timezone.utc)
            await run_in_threadpool(web.store.revoke, session.id, expires)
            await web.audit(request, "sign-out")
        response = web.redirect(request, "/login", notice="signed-out")
        response.delete_cookie(SESSION_COOKIE, path="/", secure=web.secure(request), httponly=True,
                               samesite="strict")
        return response
