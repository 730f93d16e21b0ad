"""Who may see the pages, and which POSTs are really the operator's.

- Without ``QUEUER_WEB_TOKEN`` the server answers loopback clients only, and only
  under a loopback host name (a page of another site that rebinds its DNS name to
  127.0.0.1 gets a 403, not the queue).
- With a token, a request carries it as ``Authorization: Bearer <token>``, or
  carries the session cookie the login form sets; anything else is a 401.
- Every POST from a browser carries a CSRF token: an HMAC of a random cookie
  (double submit, signed), checked with the Origin header when there is one. A
  request authenticated by its Authorization header needs none: a browser never
  adds that header to a request another site makes.

Keys derive from the token, so sessions survive a restart and all end when the
token changes; without a token they are random per process.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
import time

SESSION_COOKIE = "queuer_session"
CSRF_COOKIE = "queuer_csrf"
SESSION_SECONDS = 12 * 3600
MIN_TOKEN_LENGTH = 16
LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})


class TokenError(ValueError):
    """A QUEUER_WEB_TOKEN too weak to guard the page."""


def check_token(token: str | None) -> str | None:
    if token is None or token == "":
        return None
    # ASCII only: an HTTP header carries bytes that Starlette reads as latin-1, so a token with other
    # characters could sign in through the form but never match as a Bearer header.
    if len(token) < MIN_TOKEN_LENGTH or token.strip() != token or not (token.isascii() and token.isprintable()):
        raise TokenError(f"QUEUER_WEB_TOKEN must be at least {MIN_TOKEN_LENGTH} characters of printable ASCII, "
                         "without surrounding spaces "
                         "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    return token


def is_loopback_address(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(host_header: str) -> str:
    """The name part of a Host header: ``[::1]:8080`` -> ``::1``, ``localhost:80`` -> ``localhost``."""
    if host_header.startswith("["):
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Guard:
    def __init__(self, token: str | None) -> None:
        self.token = check_token(token)
        base = self.token.encode() if self.token else secrets.token_bytes(32)
        self._session_key = hmac.new(base, b"queuer-web/session", hashlib.sha256).digest()
        self._csrf_key = hmac.new(base, b"queuer-web/csrf", hashlib.sha256).digest()

    @property
    def token_required(self) -> bool:
        return self.token is not None

    # -- the token -----------------------------------------------------------------

    def token_matches(self, given: str | None) -> bool:
        if self.token is None or given is None:
            return False
        return hmac.compare_digest(given.encode("utf-8", "replace"), self.token.encode())

    def bearer_ok(self, authorization: str | None) -> bool:
        if not authorization:
            return False
        scheme, _, value = authorization.partition(" ")
        return scheme.lower() == "bearer" and self.token_matches(value.strip())

    # -- the session cookie -------------------------------------------------------------

    def _mac(self, key: bytes, message: str) -> str:
        return _b64(hmac.new(key, message.encode(), hashlib.sha256).digest())

    def new_session(self, now: float | None = None) -> str:
        body = f"{int(now if now is not None else time.time())}.{_b64(secrets.token_bytes(16))}"
        return f"{body}.{self._mac(self._session_key, body)}"

    def session_ok(self, value: str | None, now: float | None = None) -> bool:
        if not value or len(value) > 200:
            return False
        body, _, mac = value.rpartition(".")
        if not hmac.compare_digest(mac.encode(), self._mac(self._session_key, body).encode()):
            return False
        issued = body.split(".", 1)[0]
        if not issued.isdigit():
            return False
        age = (now if now is not None else time.time()) - int(issued)
        return 0 <= age <= SESSION_SECONDS

    # -- CSRF ----------------------------------------------------------------------------

    @staticmethod
    def new_csrf_nonce() -> str:
        return _b64(secrets.token_bytes(24))

    def csrf_token(self, nonce: str) -> str:
        """The form field that goes with this CSRF cookie."""
        return self._mac(self._csrf_key, nonce)

    def csrf_ok(self, nonce: str | None, submitted: str | None) -> bool:
        if not nonce or not submitted or len(nonce) > 100:
            return False
        return hmac.compare_digest(submitted.encode("utf-8", "replace"), self.csrf_token(nonce).encode())
