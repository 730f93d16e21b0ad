"""Who may see the pages, and which POSTs are really an operator's.

- Without a token the server answers loopback clients only, and only under a
  loopback host name (a page of another site that rebinds its DNS name to
  127.0.0.1 gets a 403, not the queue).
- With ``QUEUER_WEB_TOKEN`` (the operator's) and/or ``QUEUER_WEB_READ_TOKEN``
  (a reader's: every page, no action), a request carries one as
  ``Authorization: Bearer <token>``, or carries the session cookie the login
  form sets; anything else is a 401.
- A session cookie names its kind (operator or reader), the server's mode
  (read-write or read-only), the sessions epoch it was issued in, when, and a
  random id, under an HMAC whose key derives from that kind's token and that
  mode: a cookie of a read-only server is no cookie to a read-write one, and
  changing a token ends its sessions. The database says which epoch is current
  and which ids signed out (``queuer.web.store``).
- Every POST from a browser carries a CSRF token: an HMAC of a random cookie
  (double submit, signed), checked with the Origin header when there is one. A
  request authenticated by its Authorization header needs none: a browser never
  adds that header to a request another site makes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
import time
from dataclasses import dataclass

SESSION_COOKIE = "queuer_session"
CSRF_COOKIE = "queuer_csrf"
SESSION_SECONDS = 12 * 3600
MIN_TOKEN_LENGTH = 16
LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})

OPERATOR = "operator"
READER = "reader"
KINDS = (OPERATOR, READER)


class TokenError(ValueError):
    """A QUEUER_WEB_TOKEN (or QUEUER_WEB_READ_TOKEN) too weak to guard the page."""


def check_token(token: str | None, name: str = "QUEUER_WEB_TOKEN") -> str | None:
    if token is None or token == "":
        return None
    # ASCII only: an HTTP header carries bytes that Starlette reads as latin-1, so a token with other
    # characters could sign in through the form but never match as a Bearer header.
    if len(token) < MIN_TOKEN_LENGTH or token.strip() != token or not (token.isascii() and token.isprintable()):
        raise TokenError(f"{name} must be at least {MIN_TOKEN_LENGTH} characters of printable ASCII, "
                         "without surrounding spaces "
                         "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    return token


def check_tokens(token: str | None, read_token: str | None) -> tuple[str | None, str | None]:
    """Both tokens checked; the reader's must differ from the operator's (else a reader could act)."""
    token = check_token(token)
    read_token = check_token(read_token, "QUEUER_WEB_READ_TOKEN")
    if token is not None and token == read_token:
        raise TokenError("QUEUER_WEB_READ_TOKEN must differ from QUEUER_WEB_TOKEN")
    return token, read_token


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


@dataclass(frozen=True)
class Session:
    """What a valid session cookie says (its MAC checked; the epoch and sign-out are the store's to check)."""

    id: str
    kind: str  # OPERATOR or READER
    epoch: int
    issued: int  # unix seconds

    @property
    def expires(self) -> int:
        return self.issued + SESSION_SECONDS


class Guard:
    def __init__(self, token: str | None, read_token: str | None = None, read_only: bool = False) -> None:
        self.token, self.read_token = check_tokens(token, read_token)
        self.mode = "ro" if read_only else "rw"
        self._tokens = {OPERATOR: self.token, READER: self.read_token}
        self._session_keys: dict[str, bytes] = {}
        for kind, secret in self._tokens.items():
            if secret is not None:
                label = f"queuer-web/session/{kind}/{self.mode}".encode()
                self._session_keys[kind] = hmac.new(secret.encode(), label, hashlib.sha256).digest()
        base = (self.token or self.read_token or "").encode() or secrets.token_bytes(32)
        self._csrf_key = hmac.new(base, b"queuer-web/csrf", hashlib.sha256).digest()

    @property
    def token_required(self) -> bool:
        return self.token is not None or self.read_token is not None

    # -- the tokens ------------------------------------------------------------------

    def token_kind(self, given: str | None) -> str | None:
        """OPERATOR or READER for a matching token, else None (every token compared, in constant time)."""
        if given is None:
            return None
        given_bytes = given.encode("utf-8", "replace")
        found = None
        for kind, secret in self._tokens.items():
            if secret is not None and hmac.compare_digest(given_bytes, secret.encode()):
                found = kind
        return found

    @staticmethod
    def bearer(authorization: str | None) -> str | None:
        """The token of an ``Authorization: Bearer`` header; None for no header or another scheme
        (a proxy's Basic authentication passes through untouched)."""
        if not authorization:
            return None
        scheme, _, value = authorization.partition(" ")
        return value.strip() if scheme.lower() == "bearer" else None

    # -- the session cookie -------------------------------------------------------------

    @staticmethod
    def _mac(key: bytes, message: str) -> str:
        return _b64(hmac.new(key, message.encode(), hashlib.sha256).digest())

    def new_session(self, kind: str, epoch: int, now: float | None = None) -> tuple[str, Session]:
        """(the cookie's value, what it says) for a session of ``kind`` in ``epoch``."""
        session = Session(_b64(secrets.token_bytes(18)), kind, epoch, int(now if now is not None else time.time()))
        body = f"{kind}.{self.mode}.{epoch}.{session.issued}.{session.id}"
        return f"{body}.{self._mac(self._session_keys[kind], body)}", session

    def session(self, value: str | None, now: float | None = None) -> Session | None:
        """The session a cookie names, if this server made it, for its mode, and it has not expired."""
        if not value or len(value) > 200 or not value.isascii():
            return None
        body, _, mac = value.rpartition(".")
        parts = body.split(".")
        if len(parts) != 5:
            return None
        kind, mode, epoch, issued, session_id = parts
        key = self._session_keys.get(kind)
        if key is None or mode != self.mode:
            return None
        if not hmac.compare_digest(mac.encode(), self._mac(key, body).encode()):
            return None
        if not (epoch.isdigit() and issued.isdigit() and len(epoch) < 19 and len(issued) < 19):
            return None
        age = (now if now is not None else time.time()) - int(issued)
        if not 0 <= age <= SESSION_SECONDS:
            return None
        return Session(session_id, kind, int(epoch), int(issued))

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
