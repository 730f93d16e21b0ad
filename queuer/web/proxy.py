"""Running behind a reverse proxy: whose X-Forwarded-* headers to believe.

Only a request whose peer is a trusted proxy (``--trusted-proxy`` /
``QUEUER_WEB_TRUSTED_PROXIES``: addresses or networks) has its forwarding
headers honoured:

- ``X-Forwarded-For``: the client is the right-most address that is not a
  trusted proxy (each proxy appends the address it saw, so what a client
  wrote itself stays on the left, where it is ignored);
- ``X-Forwarded-Proto``: the scheme the client used (``http`` or ``https``):
  Secure cookies, and the origin a form must come from;
- ``X-Forwarded-Host``: the host name the client used.

From anyone else they are ignored, and the server's own refusal (a server
without a token answers no proxied request from an untrusted peer) is
``carries_proxy_headers``. ``Forwarded`` (RFC 7239) is never parsed: it only
counts as a sign that a proxy is in between.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

PROXY_HEADERS = (b"forwarded", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port",
                 b"x-forwarded-prefix", b"x-real-ip")
_HOST = re.compile(r"(?:[A-Za-z0-9-]{1,63}\.)*[A-Za-z0-9-]{1,63}\.?(?::[0-9]{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](?::[0-9]{1,5})?")

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ProxyError(ValueError):
    """Forwarding headers from a trusted proxy that cannot be read (the request is a 400)."""


def parse_networks(entries: Iterable[str]) -> tuple[IpNetwork, ...]:
    """``127.0.0.1``, ``10.0.0.0/8``, ``::1``: a ValueError names an entry that is none of these."""
    networks = []
    for entry in entries:
        text = entry.strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(f"trusted proxy {text!r} is not an IP address or network (e.g. 127.0.0.1, "
                             "10.0.0.0/8, ::1)") from None
    return tuple(networks)


def parse_public_origin(value: str | None) -> str | None:
    """``https://queue.example.com`` (a port is allowed, nothing after it): the origin forms come from."""
    if value is None or not value.strip():
        return None
    text = value.strip().rstrip("/")
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        parts = None
    if (parts is None or parts.scheme not in ("http", "https") or not parts.hostname or parts.path
            or parts.query or parts.fragment or parts.username or parts.password or not _HOST.fullmatch(parts.netloc)):
        raise ValueError(f"public origin {value!r} must be a scheme and a host, like https://queue.example.com "
                         "(no path: serve the UI at the root of its host)")
    return f"{parts.scheme}://{parts.netloc.lower()}"


def _address(text: str) -> str | None:
    """An address of X-Forwarded-For as an IP (a port or brackets removed), or None if it is none."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _values(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> list[str]:
    """Every comma-separated value of every header of that name, in order."""
    found: list[str] = []
    for key, value in headers:
        if key == name:
            found += [part.strip() for part in value.decode("latin-1").split(",")]
    return found


def carries_proxy_headers(headers: Sequence[tuple[bytes, bytes]]) -> str | None:
    """The first forwarding header a request carries, or None."""
    for key, _ in headers:
        if key in PROXY_HEADERS:
            return key.decode()
    return None


@dataclass(frozen=True)
class Forwarding:
    """What a trusted proxy said about the client; ``None`` where it said nothing."""

    client: str | None
    scheme: str | None
    host: str | None


class TrustedProxies:
    def __init__(self, entries: Iterable[str] = ()) -> None:
        self.networks = parse_networks(entries)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: str | None) -> bool:
        if not address or not self.networks:
            return False
        try:
            ip = ipaddress.ip_address(address.strip("[]"))
        except ValueError:
            return False
        mapped = getattr(ip, "ipv4_mapped", None)
        return any(ip in net or (mapped is not None and mapped in net) for net in self.networks)

    def forwarding(self, headers: Sequence[tuple[bytes, bytes]]) -> Forwarding:
        """The client, scheme and host a trusted proxy forwarded (call only for a trusted peer)."""
        client = None
        chain = [entry for entry in _values(headers, b"x-forwarded-for") if entry]
        if chain:
            addresses = [_address(entry) for entry in chain]
            for address in reversed(addresses):
                if address is None:
                    raise ProxyError("X-Forwarded-For holds something that is not an IP address")
                client = address
                if not self.trusts(address):
                    break
        proto = _values(headers, b"x-forwarded-proto")
        scheme = proto[-1].lower() if proto and proto[-1] else None
        if scheme is not None and scheme not in ("http", "https"):
            raise ProxyError("X-Forwarded-Proto must be http or https")
        hosts = _values(headers, b"x-forwarded-host")
        host = hosts[-1] if hosts and hosts[-1] else None
        if host is not None and not _HOST.fullmatch(host):
            raise ProxyError("X-Forwarded-Host is not a host name")
        return Forwarding(client, scheme, host)


def rewritten_scope(original: MutableMapping[str, Any], forwarding: Forwarding) -> dict[str, Any]:
    """The ASGI scope as the client sent the request (its address, scheme and host)."""
    scope = dict(original)
    if forwarding.client is not None:
        scope["client"] = (forwarding.client, 0)
    if forwarding.scheme is not None:
        scope["scheme"] = forwarding.scheme
    if forwarding.host is not None:
        scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"host"] + [
            (b"host", forwarding.host.encode("latin-1"))]
    return scope
