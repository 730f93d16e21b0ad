"""Database: every connection one Queuer makes, for one schema.

It owns

* one small pool (``QUEUER_DB_POOL_SIZE``, 3) for every statement: enqueue,
  reads, the worker's claims and outcomes, heartbeat and master duties
  (``pool.ConnectionPool``);
* session connections on request (``connect_session``: the LISTEN connection
  that also carries the worker's liveness lock).

What each connection is opened with is in ``params`` (the user's libpq
parameters win over our defaults), how it is opened in ``connect`` (retried
while the server is not reachable yet, refused at once when waiting can't
help). Behind a transaction pooler (``QUEUER_DB_POOLER=transaction``) nothing
may outlive a transaction: no prepared statements and no session settings,
and a session exists only through ``QUEUER_DB_DIRECT_URL``.

Callers see only queuer's errors: ConfigurationError for what waiting can't
fix, DatabaseUnreachableError after the wait, ConnectionLostError when a
connection broke mid-statement; each names the server, never the password.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row

from queuer.config.database import DatabaseConfiguration
from queuer.database.connect import first_line, open_async_connection, open_connection
from queuer.database.params import HOT_PATH_SETTINGS, NetworkTimeouts, UserParameters
from queuer.database.pool import ConnectionPool
from queuer.database.statements import Queries
from queuer.database.tolerant_json import TolerantJsonbLoader, TolerantJsonLoader
from queuer.errors import ConfigurationError, ConnectionLostError, DatabaseUnreachableError

log = logging.getLogger("queuer.database")

# How often waiting for a server that is not up yet says so.
REPORT_EVERY_SECONDS = 5.0


def channel_name(schema: str) -> str:
    """The NOTIFY channel of a schema (one per schema, all events on it)."""
    return f"queuer.{schema}"


class _Opener:
    """How one kind of connection (pooled, or session) is opened: the user's parameters, then ours."""

    def __init__(self, given: dict[str, Any], network: NetworkTimeouts, settings: tuple[tuple[str, str], ...],
                 extra: dict[str, Any] | None = None) -> None:
        self.params = UserParameters(given)
        self.kwargs = self.params.connect_kwargs(network.client_defaults())
        self.kwargs.update(extra or {})
        if self.params.uses_service:  # its own server settings are as invisible as the rest
            settings = tuple(item for item in settings if item not in network.server_settings())
        self.set_statement = self.params.set_statement(settings) if settings else None
        self.own_connect_timeout = not self.params.chooses("connect_timeout")
        self.own_application_name = not self.params.chooses("application_name")
        self.socket_timeout_ms = None if self.params.chooses("tcp_user_timeout") else network.user_timeout_ms
        """The TCP user timeout a socket keeps while idle; None when the user chose one."""

    def open(self, deadline: float, describe: str, application_name: str,
             row_factory: Any = dict_row) -> psycopg.Connection[Any]:
        kwargs = dict(self.kwargs)
        if self.own_application_name:
            kwargs["application_name"] = application_name[:63]
        conn = open_connection(kwargs, deadline, describe=describe, set_statement=self.set_statement,
                               own_connect_timeout=self.own_connect_timeout,
                               own_user_timeout=self.socket_timeout_ms is not None, row_factory=row_factory)
        # A stored value Python cannot decode (written by SQL) must not fail a whole read.
        conn.adapters.register_loader("json", TolerantJsonLoader)
        conn.adapters.register_loader("jsonb", TolerantJsonbLoader)
        return conn

    async def open_async(self, deadline: float, describe: str, application_name: str,
                         row_factory: Any = dict_row) -> psycopg.AsyncConnection[Any]:
        """``open`` for asyncio: the same parameters and settings, on an AsyncConnection."""
        kwargs = dict(self.kwargs)
        if self.own_application_name:
            kwargs["application_name"] = application_name[:63]
        conn = await open_async_connection(
            kwargs, deadline, describe=describe, set_statement=self.set_statement,
            own_connect_timeout=self.own_connect_timeout, own_user_timeout=self.socket_timeout_ms is not None,
            row_factory=row_factory)
        conn.adapters.register_loader("json", TolerantJsonLoader)
        conn.adapters.register_loader("jsonb", TolerantJsonbLoader)
        return conn


def queuer_error(exc: BaseException, broken: bool, describe: str) -> Exception | None:
    """The QueuerError a statement's psycopg error stands for (None: raise it as it is).

    ``broken``: the connection is closed or broken now. Shared by the sync and the async pool.
    """
    if isinstance(exc, (psycopg.errors.DuplicatePreparedStatement, psycopg.errors.InvalidSqlStatementName,
                        psycopg.errors.ProtocolViolation)):
        if isinstance(exc, psycopg.errors.ProtocolViolation) and "prepared statement" not in str(exc):
            return None
        return ConfigurationError(
            f"a prepared statement went missing or changed between statements ({first_line(exc)}): a "
            "transaction pooler (PgBouncer pool_mode=transaction) is in between; set QUEUER_DB_POOLER=transaction"
        )
    if isinstance(exc, psycopg.OperationalError) and broken:
        return ConnectionLostError(f"lost the connection to PostgreSQL at {describe}: {first_line(exc)}")
    return None


class Database:
    """Everything a Queuer needs to talk to PostgreSQL for one schema."""

    def __init__(self, config: DatabaseConfiguration, *, name: str = "queuer") -> None:
        self.config = config
        self.schema = config.schema
        self.queries = Queries(config.schema)
        self.channel = channel_name(config.schema)
        self.timeout = config.timeout
        self.name = name
        self._role = "producer"
        self.prepare: bool | None = None if config.transaction_pooled else True
        """Statements may be prepared server-side (not behind a transaction pooler)."""
        network = NetworkTimeouts(config.network_timeout)
        if config.transaction_pooled:
            # A session setting would stay on the server connection for the pooler's next client.
            self._pooled = _Opener(config.connect_kwargs(), network, (), extra={"prepare_threshold": None})
        else:
            self._pooled = _Opener(config.connect_kwargs(), network, HOT_PATH_SETTINGS + network.server_settings())
        session = config.session_kwargs()
        self._session = None if session is None else _Opener(session, network, network.server_settings())
        self.pool = ConnectionPool(name, config.pool_size, self._open_pooled, self._pooled.socket_timeout_ms)
        self.pool.keep_idle = 1

    @property
    def role(self) -> str:
        return self._role

    @role.setter
    def role(self, role: str) -> None:
        """"producer" or "worker": names new connections; a worker keeps its pool's idle connections."""
        self._role = role
        self.pool.keep_idle = self.pool.size if role == "worker" else 1

    @property
    def has_session(self) -> bool:
        """Whether a session connection can be had (not behind a transaction pooler without a direct URL)."""
        return self._session is not None

    # -- life cycle ---------------------------------------------------------

    def wait_until_reachable(self, wait: float) -> None:
        """Block until the server takes a connection, logging progress.

        ConfigurationError at once when the server refuses for good (wrong
        password, unknown database, ...); DatabaseUnreachableError after ``wait``.
        """
        started = time.monotonic()
        deadline = started + wait
        next_report = started + REPORT_EVERY_SECONDS
        while True:
            try:
                with self.connection(deadline=min(deadline, time.monotonic() + REPORT_EVERY_SECONDS)):
                    return
            except ConfigurationError:
                raise
            except DatabaseUnreachableError:
                now = time.monotonic()
                if now >= deadline:
                    raise
                if now >= next_report:
                    log.warning("waiting for PostgreSQL at %s (%.0f s so far, giving up after %.0f s)",
                                self.config.describe(), now - started, wait)
                    next_report = now + REPORT_EVERY_SECONDS

    def release_idle(self) -> None:
        """Close the idle pooled connections; the pool opens new ones if the database is used again."""
        self.pool.close()

    def close(self) -> None:
        """queuerPy's name for ``release_idle``: the database stays usable."""
        self.release_idle()

    # -- connections --------------------------------------------------------

    def deadline(self) -> float:
        """When a call starting now must be over (QUEUER_DB_TIMEOUT from now, on time.monotonic())."""
        return time.monotonic() + self.timeout

    @contextmanager
    def connection(self, deadline: float | None = None) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """A pooled autocommit connection with dict rows, for the caller alone inside the block."""
        pool = self.pool
        conn = pool.borrow(self.deadline() if deadline is None else deadline)
        try:
            yield conn
        except BaseException as exc:
            pool.give_back(conn)
            translated = queuer_error(exc, conn.broken or conn.closed, self.config.describe())
            if translated is not None:
                raise translated from exc
            raise
        pool.give_back(conn)

    def connect_session(self, deadline: float | None = None) -> psycopg.Connection[dict[str, Any]]:
        """A connection of its own, outside the pool (LISTEN and the liveness lock need one)."""
        if self._session is None:
            raise ConfigurationError(
                "no session connection can be had behind a transaction pooler: set QUEUER_DB_DIRECT_URL "
                "to a direct (or session-pooled) URL for LISTEN and the worker's liveness lock"
            )
        return self._session.open(self.deadline() if deadline is None else deadline,
                                  self.config.describe(), self._application_name("session"))

    async def connect_async(self, deadline: float) -> psycopg.AsyncConnection[Any]:
        """An asyncio connection opened exactly as the pool's are (the async client's pool)."""
        return await self._pooled.open_async(deadline, self.config.describe(), self._application_name("async"))

    async def connect_session_async(self, deadline: float | None = None) -> psycopg.AsyncConnection[Any]:
        """``connect_session`` for asyncio (the async client's LISTEN)."""
        if self._session is None:
            raise ConfigurationError(
                "no session connection can be had behind a transaction pooler: set QUEUER_DB_DIRECT_URL "
                "to a direct (or session-pooled) URL for LISTEN"
            )
        return await self._session.open_async(self.deadline() if deadline is None else deadline,
                                              self.config.describe(), self._application_name("async-session"))

    def _open_pooled(self, deadline: float) -> psycopg.Connection[Any]:
        return self._pooled.open(deadline, self.config.describe(), self._application_name(self.role))

    def _application_name(self, role: str) -> str:
        return f"queuer:{self.name}:{role}"

    # -- helpers ------------------------------------------------------------

    def execute(self, query: str, params: Any = None) -> list[dict[str, Any]]:
        """Run one statement on a pooled connection and return all its rows."""
        with self.connection() as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def execute_one(self, query: str, params: Any = None) -> dict[str, Any] | None:
        rows = self.execute(query, params)
        return rows[0] if rows else None


def connect(config: DatabaseConfiguration, *, application_name: str = "queuer", timeout: float | None = None,
            row_factory: Any = None) -> psycopg.Connection[Any]:
    """One autocommit connection of its own (the command line, the test kit), opened like the pool's.

    The user's libpq parameters win, as everywhere; ConfigurationError or
    DatabaseUnreachableError as for any of queuer's connections.
    """
    opener = _Opener(config.connect_kwargs(), NetworkTimeouts(config.network_timeout), ())
    deadline = time.monotonic() + (config.timeout if timeout is None else timeout)
    return opener.open(deadline, config.describe(), application_name, row_factory)
