"""A POSTed form, read and checked before any handler uses it.

The body is read only up to its limit (``/login`` reads one before anyone
has signed in), must be url-encoded UTF-8 with known fields only (checked
like query parameters), and, unless the request carries a Bearer token,
must come from this site: its Origin header when there is one, and always
its CSRF field. An action is refused first on a read-only server and for a
reader.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.requests import Request

from queuer.web.context import WebContext
from queuer.web.operations import ActionError
from queuer.web.params import BadRequest, check_names
from queuer.web.security import CSRF_COOKIE, READER

MAX_FORM_BYTES = 16 * 1024
MAX_FORM_FIELDS = 50


def parse_form(body: bytes, allowed: frozenset[str]) -> dict[str, str]:
    """An application/x-www-form-urlencoded body, checked like query parameters."""
    if len(body) > MAX_FORM_BYTES:
        raise BadRequest(f"the form is larger than {MAX_FORM_BYTES} bytes")
    try:
        text = body.decode("utf-8")
        items = parse_qsl(text, keep_blank_values=True, strict_parsing=False, max_num_fields=MAX_FORM_FIELDS,
                          errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("the form is not valid UTF-8 url-encoded data") from None
    return check_names(items, allowed)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it grows past ``limit``: a chunked body has no Content-Length to
    check first."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BadRequest(f"the form is larger than {limit} bytes")
    return bytes(body)


async def read_form(web: WebContext, request: Request, allowed: frozenset[str], action: bool = True) -> dict[str, str]:
    """The POSTed form, after the read-only and CSRF checks; without the csrf field."""
    if action and web.settings.read_only:
        raise ActionError(403, "This server was started with --read-only: it changes nothing.")
    if action and request.state.role == READER:
        raise ActionError(403, "Signed in with the read-only token (QUEUER_WEB_READ_TOKEN): it shows "
                               "everything and changes nothing.")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    length = request.headers.get("content-length")
    if length is not None and not (length.isascii() and length.isdigit()):  # "²".isdigit() is True
        raise BadRequest("Content-Length is not a number")
    if length is not None and int(length) > MAX_FORM_BYTES:
        raise BadRequest("the form is too large")
    body = await read_body(request, MAX_FORM_BYTES)
    if content_type != "application/x-www-form-urlencoded" and (body or content_type):
        raise BadRequest("send the form as application/x-www-form-urlencoded")
    values = parse_form(body, allowed | {"csrf"})
    submitted = values.pop("csrf", None)
    if request.state.auth != "bearer":
        origin = request.headers.get("origin")
        if origin is not None and origin not in web.allowed_origins(request):
            raise ActionError(403, "This form was sent from another site (its Origin does not match"
                                   f"{'' if web.public_origin else '; behind a proxy, set --public-origin'}).")
        if not web.tokens.csrf_ok(request.cookies.get(CSRF_COOKIE), submitted):
            raise ActionError(403, "The form's CSRF token is missing or stale: reload the page and try again.")
    return values
