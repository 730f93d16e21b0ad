"""Database configuration, read from ``QUEUER_DB_*`` environment variables.

Values are handed to libpq as keyword arguments, never pasted into a
connection string, so a password with spaces, quotes or nothing at all works.
The password is kept out of every repr and error message.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from psycopg.conninfo import conninfo_to_dict

from queuer.errors import ConfigurationError

ENV_PREFIX = "QUEUER_DB_"
DEFAULT_SCHEMA = "public"

# A schema is an SQL identifier: we accept the plain form only, so it can be
# quoted without escaping, and short enough that "queuer." + schema stays a
# valid NOTIFY channel name (63 bytes at most).
_SCHEMA_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,47}$")


def validate_schema_name(schema: str) -> str:
    """Return ``schema`` if it is a safe identifier, else raise ConfigurationError."""
    if not isinstance(schema, str) or not _SCHEMA_PATTERN.match(schema):
        raise ConfigurationError(
            f"invalid schema name {schema!r}: use 1 to 48 letters, digits or "
            "underscores, starting with a letter or underscore"
        )
    return schema


def quote_identifier(name: str) -> str:
    """Quote a validated identifier for use in SQL text."""
    return '"' + validate_schema_name(name) + '"'


@dataclass(frozen=True)
class DatabaseConfiguration:
    """Where the queue lives. ``password`` never shows in repr or messages."""

    host: str | None = None
    """One host, or a comma-separated list that libpq tries in order (failover)."""
    port: int | str | None = None
    """One port, or a comma-separated list matching the hosts."""
    database: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    schema: str = DEFAULT_SCHEMA
    sslmode: str | None = None
    with_table_drop: bool = False
    """queuerPy's switch: drop queuer's tables and make them anew when a Queuer is created."""
    with_timescale: bool = False
    """Accepted for queuerPy code; queuer needs no extension and uses plain tables either way."""
    timeout: float = 10.0
    """Seconds a call (``add_job``, a query) waits for the server before ``DatabaseUnreachableError``."""
    startup_wait: float = 60.0
    """Seconds creating a Queuer waits for a server that is not up yet (a container started before its database)."""
    pooler: str | None = None
    """``"transaction"`` when a transaction pooler (PgBouncer ``pool_mode=transaction``) is in between."""
    direct_url: str | None = field(default=None, repr=False)
    """A direct (or session-pooled) URL for the worker's session: LISTEN and its liveness lock."""
    pool_size: int = 3
    """Connections a queuer pools (a worker has one more, its session)."""
    network_timeout: float = 10.0
    """Seconds a connection's peer may stay silent (no ACK, no keepalive answer) before the connection is dropped, on
    both ends: a worker host that vanished frees its jobs this fast.
    """
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)
    """Extra libpq keywords (from ``QUEUER_DB_URL`` or given explicitly)."""

    def __post_init__(self) -> None:
        validate_schema_name(self.schema)
        if self.port is not None:
            object.__setattr__(self, "port", _ports(self.port, "the port"))
        if self.pooler not in (None, "session", "transaction"):
            raise ConfigurationError(f"QUEUER_DB_POOLER must be 'session' or 'transaction', not {self.pooler!r}")
        if isinstance(self.pool_size, bool) or not isinstance(self.pool_size, int) or self.pool_size < 1:
            raise ConfigurationError(f"the pool size must be a positive integer, not {self.pool_size!r}")
        for name in ("timeout", "startup_wait", "network_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ConfigurationError(f"DatabaseConfiguration.{name} must be a positive number of seconds, not {value!r}")

    @classmethod
    def from_url(cls, url: str, source: str = "the URL") -> DatabaseConfiguration:
        """A configuration from a libpq URL or conninfo string (multi-host included), every parameter kept."""
        return cls.from_env({ENV_PREFIX + "URL": url}, url_source=source)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, url_source: str = "QUEUER_DB_URL") -> DatabaseConfiguration:
        """Build a configuration from ``QUEUER_DB_*`` variables (or ``QUEUER_DB_URL``)."""
        env = os.environ if environ is None else environ
        def get(key: str) -> str | None:
            return env.get(ENV_PREFIX + key)

        extra: dict[str, Any] = {}
        url = get("URL")
        if url:
            try:
                extra = dict(conninfo_to_dict(url))
            except Exception:  # psycopg's message may echo the URL, password included
                raise ConfigurationError(
                    f"{url_source} is not a valid PostgreSQL URL or conninfo string"
                ) from None
        url_port = extra.pop("port", None)
        port = get("PORT")
        ports = _ports(port, "QUEUER_DB_PORT") if port else (
            _ports(url_port, f"the port of {url_source}") if url_port else None)
        return cls(
            host=get("HOST") or extra.pop("host", None),
            port=ports,
            database=get("DATABASE") or extra.pop("dbname", None),
            username=get("USERNAME") or extra.pop("user", None),
            password=get("PASSWORD") if get("PASSWORD") is not None else extra.pop("password", None),
            schema=_schema_from_env(get("SCHEMA")),
            sslmode=get("SSLMODE") or extra.pop("sslmode", None),
            timeout=_seconds(get("TIMEOUT"), "QUEUER_DB_TIMEOUT", 10.0),
            pooler=(get("POOLER") or "").strip().lower() or None,
            direct_url=get("DIRECT_URL") or None,
            pool_size=_count(get("POOL_SIZE"), "QUEUER_DB_POOL_SIZE", 3),
            startup_wait=_seconds(get("STARTUP_WAIT"), "QUEUER_DB_STARTUP_WAIT", 60.0),
            network_timeout=_seconds(get("NETWORK_TIMEOUT"), "QUEUER_DB_NETWORK_TIMEOUT", 10.0),
            with_table_drop=(get("WITH_TABLE_DROP") or "").strip().lower() == "true",
            with_timescale=(get("WITH_TIMESCALE") or "").strip().lower() == "true",
            extra=extra,
        )

    @staticmethod
    def is_configured(environ: Mapping[str, str] | None = None) -> bool:
        """True when any ``QUEUER_DB_*`` variable is set."""
        env = os.environ if environ is None else environ
        return any(key.startswith(ENV_PREFIX) for key in env)

    def with_schema(self, schema: str) -> DatabaseConfiguration:
        """A copy of this configuration on another schema; ConfigurationError if ``schema`` is not a valid name."""
        return replace(self, schema=schema)

    def connect_kwargs(self) -> dict[str, Any]:
        """The libpq parameters this configuration gives (unset ones are left to libpq and to queuer's defaults)."""
        kwargs: dict[str, Any] = dict(self.extra)
        for key, value in (
            ("host", self.host),
            ("port", self.port),
            ("dbname", self.database),
            ("user", self.username),
            ("password", self.password),
            ("sslmode", self.sslmode),
        ):
            if value is not None:
                kwargs[key] = value
        return kwargs

    @property
    def transaction_pooled(self) -> bool:
        """A transaction pooler is in between: no session state, no prepared statements."""
        return self.pooler == "transaction"

    def session_kwargs(self) -> dict[str, Any] | None:
        """Keyword arguments for a session connection (LISTEN, liveness); None when there can be none."""
        if self.direct_url:
            try:
                kwargs = dict(conninfo_to_dict(self.direct_url))
            except Exception:  # psycopg's message may echo the URL, password included
                raise ConfigurationError("QUEUER_DB_DIRECT_URL is not a valid PostgreSQL URL or conninfo string") from None
            return kwargs
        if self.transaction_pooled:
            return None
        return self.connect_kwargs()

    def describe(self) -> str:
        """A human-readable target for messages: never includes the password."""
        host = self.host or "(libpq default host)"
        port = f":{self.port}" if self.port else ""
        if self.host and "," in self.host:
            hosts = self.host.split(",")
            ports = str(self.port or "").split(",")
            if len(ports) == len(hosts):
                return self._describe_hosts([f"{h}:{p}" if p else h for h, p in zip(hosts, ports)])
            return self._describe_hosts([h + port for h in hosts])
        db = self.database or "(libpq default database)"
        user = f"{self.username}@" if self.username else ""
        return f"{user}{host}{port}/{db} schema {self.schema}"

    def _describe_hosts(self, hosts: list[str]) -> str:
        db = self.database or "(libpq default database)"
        user = f"{self.username}@" if self.username else ""
        return f"{user}{{{','.join(hosts)}}}/{db} schema {self.schema}"


def _seconds(raw: str | None, variable: str, default: float) -> float:
    return float(_positive(raw, variable, default, float, "a number of seconds"))


def _count(raw: str | None, variable: str, default: int) -> int:
    return int(_positive(raw, variable, default, int, "a whole number"))


def _positive(raw: str | None, variable: str, default: float, kind: type, what: str) -> float:
    """A positive number from an environment variable; ConfigurationError naming it otherwise."""
    if raw is None or not raw.strip():
        return default
    try:
        value: float = kind(raw)
    except ValueError:
        raise ConfigurationError(f"{variable} must be {what}, not {raw!r}") from None
    if not 0 < value < math.inf:
        raise ConfigurationError(f"{variable} must be positive and finite, not {raw!r}")
    return value

def _schema_from_env(value: str | None) -> str:
    if value is None:
        return DEFAULT_SCHEMA
    if not value.strip():
        raise ConfigurationError(
            "QUEUER_DB_SCHEMA is set but empty: unset it for the default schema 'public', or name a schema"
        )
    return value


def _ports(value: int | str, source: str) -> int | str:
    """One port as an int, or libpq's comma-separated list as text; ConfigurationError naming ``source``."""
    if isinstance(value, bool):
        raise ConfigurationError(f"{source} must be a port number, not {value!r}")
    parts = [value] if isinstance(value, int) else [p.strip() for p in str(value).split(",")]
    numbers: list[int | str] = []
    for part in parts:
        if part == "" and len(parts) > 1:
            numbers.append("")  # this host on libpq's default port
            continue
        try:
            number = int(part)
        except ValueError:
            raise ConfigurationError(
                f"{source} must be a number (or a comma-separated list for several hosts), not {value!r}"
            ) from None
        if not 0 < number < 65536:
            raise ConfigurationError(f"invalid port {number} in {source}: use 1 to 65535")
        numbers.append(number)
    return numbers[0] if len(numbers) == 1 else ",".join(str(n) for n in numbers)
