"""Connections: one psycopg pool per Queuer, plus dedicated LISTEN connections.

Pooled connections run in autocommit mode (each statement commits on its own,
which is what the one-statement operations want) and are checked before use
when they sat idle, so a connection the server closed (restart,
``pg_terminate_backend``) is replaced instead of failing a caller.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from queuer.database.queries import Queries
from queuer.errors import DatabaseUnreachableError
from queuer.helper.config import DatabaseConfiguration

log = logging.getLogger("queuer.database")

# A connection idle for longer than this is pinged before it is handed out.
IDLE_CHECK_SECONDS = 1.0

# Planner settings of the hot-path connections: only index scans are left.
HOT_PATH_PLANNER_OPTIONS = (
    " -c enable_sort=off -c enable_bitmapscan=off -c enable_seqscan=off"
    " -c enable_hashjoin=off -c enable_mergejoin=off"
    # A disabled node still in a plan (the small sort of serial keys) makes its
    # cost enormous, which would trigger JIT compilation: milliseconds per claim.
    " -c jit=off"
)


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
        self._last_used: dict[int, float] = {}
        self._open_lock = threading.Lock()
        self._ever_opened = False
        self._sizes = (min_size, max_size)
        self._name = name
        self.pool, self.hot_pool = self._make_pools()

    def _make_pools(self) -> tuple[ConnectionPool, ConnectionPool]:
        pool = self._make_pool(self._kwargs, *self._sizes, self._name)
        # The hot path (claim, outcomes, release) gets connections of its own whose
        # planner may only use index scans: with the stale statistics of a table
        # that just grew from empty, it would otherwise sort or scan the whole
        # queue on every claim and every batch of outcomes.
        hot_kwargs = {**self._kwargs, "options": (self._kwargs.get("options", "") + HOT_PATH_PLANNER_OPTIONS).strip()}
        return pool, self._make_pool(hot_kwargs, 1, 3, self._name + "-hot")

    def _make_pool(self, kwargs: dict[str, Any], min_size: int, max_size: int, name: str) -> ConnectionPool:
        return ConnectionPool(
            kwargs=kwargs,
            min_size=min_size,
            max_size=max_size,
            open=False,
            name=name,
            configure=self._configure,
            check=self._check_if_idle,
            reconnect_timeout=0,  # never give up reconnecting: a restart may take a while
            timeout=self.connect_timeout,
        )

    # -- life cycle ---------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return not self.pool.closed

    def open(self) -> None:
        """Check the server answers (failing fast with libpq's reason), then open the pool.

        After ``close()`` it opens new pools: a closed psycopg pool cannot be reused.
        """
        with self._open_lock:
            if not self.pool.closed:
                return
            if self._ever_opened:
                self.pool, self.hot_pool = self._make_pools()
            self._open_pool()
            self._ever_opened = True

    def _open_pool(self) -> None:
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
        if not self.hot_pool.closed:
            self.hot_pool.close(timeout=5)

    # -- connections --------------------------------------------------------

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """A pooled autocommit connection with dict rows."""
        with self._borrow(self.pool) as conn:
            yield conn

    @contextmanager
    def hot_connection(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """A connection for the worker's hot path (see HOT_PATH_PLANNER_OPTIONS); opened on first use."""
        if self.hot_pool.closed:
            with self._open_lock:
                if self.hot_pool.closed:
                    self.hot_pool.open(wait=True, timeout=self.connect_timeout)
        with self._borrow(self.hot_pool) as conn:
            yield conn

    @contextmanager
    def _borrow(self, pool: ConnectionPool) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        if pool.closed and pool is self.pool:
            self.open()  # used again after close(): reopen
            pool = self.pool
        with pool.connection() as conn:
            try:
                yield conn  # type: ignore[misc]
            finally:
                self._last_used[id(conn)] = time.monotonic()  # see _check_if_idle

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
