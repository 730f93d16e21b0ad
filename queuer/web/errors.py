"""The page for an exception: what the operator can act on, or a 500 logged with its traceback."""

from __future__ import annotations

import logging

import psycopg
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from queuer.errors import DatabaseUnreachableError, JobNotFoundError
from queuer.web.context import WebContext
from queuer.web.operations import ActionError
from queuer.web.params import BadRequest
from queuer.web.proxy import ProxyError

log = logging.getLogger("queuer.web")

EXPECTED = (BadRequest, ActionError, HTTPException, DatabaseUnreachableError, psycopg.Error, JobNotFoundError)
"""What the pages expect to raise: Starlette's exception handlers answer these with their pages."""
MESSAGES = {404: "There is no such page.", 405: "This address does not take that method."}


class ErrorPages:
    def __init__(self, web: WebContext) -> None:
        self.web = web

    async def on_error(self, request: Request, exc: Exception) -> Response:
        error = self.web.views.error
        if isinstance(exc, (BadRequest, ProxyError)):
            return error(request, 400, str(exc))
        if isinstance(exc, ActionError):
            if exc.status == 403:
                log.warning("refused %s %s from %s (%s): %s", request.method, request.url.path,
                            request.state.client, self.web.credential(request), exc.message)
            return error(request, exc.status, exc.message)
        if isinstance(exc, HTTPException):
            return error(request, exc.status_code, MESSAGES.get(exc.status_code, str(exc.detail)))
        if isinstance(exc, DatabaseUnreachableError):
            return error(request, 503, f"PostgreSQL does not answer: {exc}")
        if isinstance(exc, psycopg.Error):
            # e.g. a read that ran into the statement timeout; the server's message names no secret
            log.warning("database error on %s %s: %s", request.method, request.url.path, exc)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return error(request, 503, f"PostgreSQL could not answer this page: {first}")
        if isinstance(exc, JobNotFoundError):
            return error(request, 404, f"{exc}: it may have been pruned from the archive.")
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return error(request, 500, "Unexpected error: the server's log has the details.")
