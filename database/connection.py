"""Connections: one psycopg pool per Queuer, plus dedicated LISTEN connections.

Pooled connections run in autocommit mode (each statement commits on its own,
which is what the one-statement operations want) and are checked before use
when they sat idle, so a connection the server closed (restart,
``pg_terminate_backend``) is replaced instead of failing a caller.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from typing import Any, Iterator

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from database.queries import Queries
from helper.config import DatabaseConfiguration

log = logging.getLogger("queuer.database")

# A connection idle for longer than this is pinged before it is handed out.
IDLE_CHECK_SECONDS = 1.0


class DatabaseUnreachableError(ConnectionError):
    """PostgreSQL could not be reached; the message names the target (never the password)."""


def channel_name(schema: str) -> str:
    """The NOTIFY channel of a schema (one per schema, all events on it)."""
    return f"queuer.{schema}"


class Database:
    """Everything a Queuer needs to talk to PostgreSQL for one schema."""

    def __init__(
        self,
        config: DatabaseConfiguration,
        *,
        min_size: int = 2,
        max_size: int = 8,
        connect_timeout: float = 10.0,
        name: str = "queuer",
    ) -> None:
        self.config = config
        self.schema = config.schema
        self.queries = Queries(config.schema)
        self.channel = channel_name(config.schema)
        self.connect_timeout = connect_timeout
        self._kwargs: dict[str, Any] = {**config.connect_kwargs(), "autocommit": True}
        self._kwargs.setdefault("connect_timeout", max(1, int(connect_timeout)))
        self.pool = ConnectionPool(
            kwargs=self._kwargs,
            min_size=min_size,
            max_size=max_size,
            open=False,
            name=name,
            configure=self._configure,
            check=self._check_if_idle,
            reconnect_timeout=0,  # never give up reconnecting: a restart may take a while
            timeout=connect_timeout,
        )
        self._last_used: dict[int, float] = {}

    # -- life cycle ---------------------------------------------------------

    def open(self) -> None:
        """Check the server answers (failing fast with libpq's reason), then open the pool."""
        try:
            psycopg.connect(**self._kwargs).close()
        except psycopg.Error as exc:
            raise DatabaseUnreachableError(
                f"cannot connect to PostgreSQL at {self.config.describe()}: {_first_line(exc)}. "
                "Check QUEUER_DB_HOST/PORT/DATABASE/USERNAME/PASSWORD (or QUEUER_DB_URL) "
                "and that the server is running."
            ) from None
        try:
            self.pool.open(wait=True, timeout=self.connect_timeout)
        except PoolTimeout:
            self.pool.close(timeout=0)
            raise DatabaseUnreachableError(
                f"PostgreSQL at {self.config.describe()} accepted one connection but the pool "
                f"could not open {self.pool.min_size} within {self.connect_timeout:g}s; "
                "check max_connections on the server"
            ) from None

    def close(self) -> None:
        self.pool.close(timeout=5)

    # -- connections --------------------------------------------------------

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """A pooled autocommit connection with dict rows."""
        with self.pool.connection() as conn:
            try:
                yield conn  # type: ignore[misc]
            finally:
                self._last_used[id(conn)] = time.monotonic()

    def connect(self, **overrides: Any) -> psycopg.Connection[dict[str, Any]]:
        """A new connection outside the pool (LISTEN needs its own)."""
        conn = psycopg.connect(**{**self._kwargs, **overrides}, row_factory=dict_row)
        return conn

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        conn.row_factory = dict_row  # type: ignore[assignment]
        self._last_used[id(conn)] = time.monotonic()

    def _check_if_idle(self, conn: psycopg.Connection[Any]) -> None:
        # Ping only connections that sat idle: a busy queue pays nothing.
        if time.monotonic() - self._last_used.get(id(conn), 0.0) > IDLE_CHECK_SECONDS:
            conn.execute("")

    # -- helpers ------------------------------------------------------------

    def execute(self, query: str, params: Any = None) -> list[dict[str, Any]]:
        """Run one statement on a pooled connection and return all its rows."""
        with self.connection() as conn:
            cur = conn.execute(query, params)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []

    def execute_one(self, query: str, params: Any = None) -> dict[str, Any] | None:
        rows = self.execute(query, params)
        return rows[0] if rows else None


def _first_line(exc: BaseException) -> str:
    # libpq's messages name host and port, never the password.
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
