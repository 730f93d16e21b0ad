"""Slowing down token guessing: failed sign-ins and failed Bearer tokens.

Each failure is answered only after a delay that doubles with its client's
recent failures (0.25 s, 0.5 s, 1 s, ... at most 5 s), and never sooner than
``spacing`` after the previous failure this server answered, whoever sent it:
failures leave one at a time, so guesses sent in parallel, from one address
or from many, queue up behind each other. The waits are asyncio sleeps: a
signed-in operator, or a right token, is answered at once meanwhile.

While that queue is more than ``max_backlog`` seconds long, a new attempt is
refused with a 429 before its token is even compared: the number of guesses
a server checks per second stays bounded however many connections try.

Addresses are keyed as they are, except IPv6 ones by their /64 (one host
usually holds a whole /64). Behind a reverse proxy they are the real clients'
only with ``--trusted-proxy``; otherwise every client shares the proxy's.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Record:
    failures: int
    last: float
    reserved_until: float = 0.0  # the latest server-wide slot this client holds


def client_key(address: str | None) -> str:
    """The key a client's failures count under."""
    if not address:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:100]
    if ip.version == 6 and ip.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip.ipv4_mapped or ip) if ip.version == 6 else str(ip)


class Throttle:
    def __init__(self, spacing: float = 0.05, base_delay: float = 0.25, max_delay: float = 5.0,
                 forget_after: float = 900.0, max_backlog: float = 30.0, max_clients: int = 10_000,
                 client_backlog: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.spacing = spacing
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.forget_after = forget_after
        self.max_backlog = max_backlog
        self.max_clients = max_clients
        self.client_backlog = client_backlog
        """One client's failures hold server-wide slots for at most this far ahead, so that a single address cannot
        queue enough to have every other client's attempts refused.
        """
        self.clock = clock
        # A plain lock, never held across an await: the test client may run requests on several event loops.
        self._lock = threading.Lock()
        self._clients: OrderedDict[str, _Record] = OrderedDict()
        self._next_slot = 0.0  # when the next failure may be answered, server-wide
        self.refused = 0  # attempts refused unexamined, since start

    def retry_after(self) -> int | None:
        """Seconds to wait when the queue of failures is too long to examine another attempt, else None."""
        with self._lock:
            backlog = self._next_slot - self.clock()
            if backlog <= self.max_backlog:
                return None
            self.refused += 1
            return max(1, math.ceil(backlog - self.max_backlog))

    def failure(self, address: str | None) -> tuple[int, float]:
        """Record a failure of this client: (its recent failures, seconds to wait before answering)."""
        key = client_key(address)
        with self._lock:
            now = self.clock()
            record = self._clients.pop(key, None)
            if record is None or now - record.last > self.forget_after:
                record = _Record(0, now)
            record.failures += 1
            record.last = now
            self._clients[key] = record
            while len(self._clients) > self.max_clients:
                self._clients.popitem(last=False)  # the longest quiet
            own = min(self.base_delay * 2 ** min(record.failures - 1, 30), self.max_delay)
            if record.reserved_until - now > self.client_backlog:
                # Enough of its own queued: it waits behind them, and takes no new server-wide slot.
                return record.failures, max(now + own, record.reserved_until) - now
            slot = max(now + own, self._next_slot)
            self._next_slot = slot + self.spacing
            record.reserved_until = slot
            return record.failures, slot - now

    def failures(self, address: str | None) -> int:
        with self._lock:
            record = self._clients.get(client_key(address))
            if record is None or self.clock() - record.last > self.forget_after:
                return 0
            return record.failures
