"""HTML from the templates: the Jinja environment, its filters, and a page or an error page as a response."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse

from queuer.payload.serialization import Undecodable
from queuer.web.security import READER, Guard

MAX_SHOWN = 64_000
"""The most characters of a stored error, or of printed arguments or a result, that a page shows."""
ERROR_TITLES = {400: "Bad request", 401: "Sign in", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
                409: "Conflict", 413: "Too large", 415: "Unsupported form", 429: "Too many attempts",
                500: "Unexpected error", 503: "Database unavailable"}


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


def _tail(rid: object) -> str:
    """A rid's last 8 hex digits: its random part. Jobs added together (a workflow's) share their first
    digits, which are the time they were made, so only the end tells them apart."""
    return "…" + str(rid)[-8:]


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0][:200] if (text or "").strip() else ""


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("queuer.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=_when, pretty=_pretty, first_line=_first_line, short=lambda rid: str(rid)[:8],
                       number=lambda n: f"{n:,}", capped=_capped, tail=_tail,
                       # a path segment: a workflow id may hold "/", "?", "#" or "%"
                       segment=lambda value: quote(str(value), safe=""))
    env.globals.update(ago=_ago, urlencode=urlencode)
    return env


class Renderer:
    """A template as a response, with what every page shows: who is signed in, the CSRF field, the schema."""

    def __init__(self, tokens: Guard, schema: str, read_only: bool) -> None:
        self.tokens = tokens
        self.schema = schema
        self.read_only = read_only
        self.env = environment()

    def render(self, request: Request, template: str, status: int = 200, headers: dict[str, str] | None = None,
               **context: Any) -> HTMLResponse:
        state = request.state
        nonce = getattr(state, "csrf_nonce", "") or ""
        role = getattr(state, "role", None)
        page = self.env.get_template(template).render(
            base=request.scope.get("root_path", ""),
            csrf=self.tokens.csrf_token(nonce) if nonce else "",
            read_only=self.read_only or role == READER,
            reader=role == READER,
            signed_in=getattr(state, "auth", None) == "session",
            # the schema's name is for those who may see the queue
            schema=self.schema if getattr(state, "auth", None) else None,
            path=request.url.path,
            notice=context.pop("notice", None),
            **context,
        )
        return HTMLResponse(page, status_code=status, headers=headers)

    def error(self, request: Request, status: int, message: str, headers: dict[str, str] | None = None) -> HTMLResponse:
        return self.render(request, "error.html", status=status, title=ERROR_TITLES.get(status, "Error"),
                           message=message, code=status, headers=headers)
