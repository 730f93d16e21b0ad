"""What a connection is opened with: the user's libpq parameters, then our defaults.

Every libpq parameter the user gives wins: in ``QUEUER_DB_URL`` (URL or
conninfo), in ``QUEUER_DB_*``, in ``DatabaseConfiguration(extra=...)`` or in
libpq's own environment variables (``PGCONNECT_TIMEOUT``, ``PGAPPNAME``,
``PGOPTIONS``, ...). Ours fill only the gaps:

* TCP keepalives and ``tcp_user_timeout`` on the client, derived from the
  network timeout, so a connection to a host that vanished (no socket closed)
  fails in seconds instead of after the kernel's ~15 minutes;
* the same on the server's end of each connection, as plain ``SET``s after
  connecting (never startup ``options``, which poolers refuse), so the server
  frees a vanished worker's backend, and with it its liveness lock, as fast;
* planner switches for the hot path (see ``HOT_PATH_SETTINGS``).

A server-side setting the user put in ``options`` (``-c name=value``) or
``PGOPTIONS`` is never overridden by a ``SET`` of ours. With a service file
(``service=``, ``PGSERVICE``), whose contents libpq reads and we cannot see,
no client-side default of ours is added at all.
"""

from __future__ import annotations

import math
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from psycopg import pq

# Planner settings of pooled connections: only index scans are left. With the
# stale statistics of a table that just grew from empty, the planner would
# otherwise sort or scan the whole queue on every claim. Left out behind a
# transaction pooler (where a session setting would leak to others).
HOT_PATH_SETTINGS: tuple[tuple[str, str], ...] = (
    ("enable_sort", "off"),
    ("enable_bitmapscan", "off"),
    ("enable_seqscan", "off"),
    ("enable_hashjoin", "off"),
    ("enable_mergejoin", "off"),
    # A disabled node still in a plan (the small sort of serial keys) makes its
    # cost enormous, which would trigger JIT compilation: milliseconds per claim.
    ("jit", "off"),
)

# "-c name=value" or "--name=value" inside libpq's options parameter.
_OPTION_SETTING = re.compile(r"^(?:-c|--)\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*=")


@lru_cache(maxsize=1)
def _libpq_environment_variables() -> dict[str, str]:
    """libpq keyword -> the environment variable that sets it (PGAPPNAME -> application_name, ...)."""
    found: dict[str, str] = {}
    for option in pq.Conninfo.get_defaults():
        if option.envvar:
            found[option.keyword.decode()] = option.envvar.decode()
    return found


@dataclass(frozen=True)
class NetworkTimeouts:
    """How long a silent peer is tolerated before its connection is dropped, on both ends."""

    seconds: float

    @property
    def keepalives_idle(self) -> int:
        return max(1, math.ceil(self.seconds * 0.4))

    @property
    def keepalives_interval(self) -> int:
        return max(1, math.ceil(self.seconds * 0.2))

    keepalives_count = 3

    @property
    def user_timeout_ms(self) -> int:
        return max(1000, int(self.seconds * 1000))

    def client_defaults(self) -> dict[str, Any]:
        """libpq keywords for this process's end of the connection."""
        return {
            "keepalives": 1,
            "keepalives_idle": self.keepalives_idle,
            "keepalives_interval": self.keepalives_interval,
            "keepalives_count": self.keepalives_count,
            "tcp_user_timeout": self.user_timeout_ms,
        }

    def server_settings(self) -> tuple[tuple[str, str], ...]:
        """Settings for the server's end (its backend's socket), applied with SET."""
        return (
            ("tcp_keepalives_idle", str(self.keepalives_idle)),
            ("tcp_keepalives_interval", str(self.keepalives_interval)),
            ("tcp_keepalives_count", str(self.keepalives_count)),
            ("tcp_user_timeout", str(self.user_timeout_ms)),
        )


class UserParameters:
    """The libpq parameters one configuration gives, and which of ours may fill the gaps."""

    def __init__(self, given: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.given: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        from_env = {keyword for keyword, variable in _libpq_environment_variables().items() if env.get(variable)}
        self.keywords: frozenset[str] = frozenset(self.given) | from_env
        """Every keyword the user set, directly or through libpq's environment."""
        # libpq reads PGOPTIONS only when no "options" parameter is given.
        options = self.given.get("options") if "options" in self.given else env.get("PGOPTIONS")
        self.server_settings: frozenset[str] = frozenset(_settings_in_options(str(options or "")))
        """Server settings the user put in "options" or PGOPTIONS."""
        self.uses_service = "service" in self.keywords
        """A service file (service=, PGSERVICE) may set anything; what it sets cannot be seen from here."""

    def connect_kwargs(self, defaults: Mapping[str, Any]) -> dict[str, Any]:
        """The user's parameters, with ``defaults`` for the keywords the user left unset
        (none at all with a service file, whose settings must win and cannot be seen)."""
        kwargs = dict(self.given)
        if self.uses_service:
            return kwargs
        for key, value in defaults.items():
            if key not in self.keywords:
                kwargs[key] = value
        return kwargs

    def chooses(self, keyword: str) -> bool:
        """Whether the user may have set this libpq keyword (always, with a service file)."""
        return self.uses_service or keyword in self.keywords

    def set_statement(self, settings: tuple[tuple[str, str], ...]) -> str | None:
        """One batch of SETs for ``settings`` the user did not choose; None when nothing is left."""
        chosen = [(name, value) for name, value in settings if name not in self.server_settings]
        if not chosen:
            return None
        return " ".join(f"SET {name} = {value};" for name, value in chosen)


def _settings_in_options(options: str) -> list[str]:
    """Setting names in a libpq ``options`` string: ``-c a=1 -c b=2 --c=3`` -> [a, b, c]."""
    try:
        words = shlex.split(options.replace("\\ ", "\0"))
    except ValueError:
        words = options.split()
    names: list[str] = []
    pending_c = False
    for word in words:
        if pending_c:
            word = "-c" + word
            pending_c = False
        if word == "-c":
            pending_c = True
            continue
        match = _OPTION_SETTING.match(word)
        if match:
            names.append(match.group(1).replace("-", "_").lower())
    return names
