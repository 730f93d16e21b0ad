"""AsyncConnectionPool and AsyncDatabase: the async client's connections, for one event loop.

The pool is the sync ``ConnectionPool``'s rules in asyncio: at most ``size``
autocommit connections, opened on demand (by ``Database.connect_async``, so
with the user's parameters and our settings exactly as the sync pool's), the
most recently used idle one handed out first, pinged if it sat idle, and a
broken one dropped and replaced. A connection given back goes straight to the
longest waiting borrower, so 1,000 callers are served in turn. While lent, a
TCP connection's user timeout is bounded by the caller's deadline, so a host
that went silent fails the call in its time.

``AsyncDatabase.connection`` raises queuer's errors as ``Database.connection``
does (``queuer_error``): ConnectionLostError for a connection that broke,
DatabaseUnreachableError when none could be had by the deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from queuer.database.connect import close_quietly_async, first_line
from queuer.database.connection import Database, queuer_error
from queuer.database.pool import IDLE_CHECK_SECONDS, bound_by_deadline, is_tcp, set_user_timeout
from queuer.errors import DatabaseUnreachableError

AsyncConnect = Callable[[float], Awaitable[psycopg.AsyncConnection[Any]]]


class AsyncConnectionPool:
    """At most ``size`` AsyncConnections, opened by ``connect(deadline)``; for one event loop."""

    def __init__(self, name: str, size: int, connect: AsyncConnect, socket_timeout_ms: int | None = None) -> None:
        self.name = name
        self.size = size
        # The TCP user timeout of an idle connection (None: the user chose one; the sockets are left alone).
        self.socket_timeout_ms = socket_timeout_ms
        self._connect = connect
        self._idle: list[tuple[psycopg.AsyncConnection[Any], float]] = []  # (conn, last used), LRU first
        self._open = 0  # idle + lent out + being opened
        # Each waiter's future gets a connection, or None: "a slot is free, open one".
        self._waiters: deque[asyncio.Future[psycopg.AsyncConnection[Any] | None]] = deque()
        self._last_failure: str | None = None
        self._deadlines: dict[asyncio.Future[psycopg.AsyncConnection[Any] | None], float] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._closing: set[asyncio.Task[None]] = set()  # closes under way: a task nobody holds may vanish
        self.opened = 0
        """Connections opened over the pool's life."""

    async def borrow(self, deadline: float) -> psycopg.AsyncConnection[Any]:
        """A connection for the caller alone until ``give_back``; DatabaseUnreachableError after ``deadline``."""
        while True:
            conn: psycopg.AsyncConnection[Any] | None = None
            if self._idle:
                conn, last_used = self._idle.pop()
            elif self._open < self.size:
                self._open += 1
            else:
                conn = await self._wait(deadline)
                if conn is None:
                    self._open += 1  # the slot handed over by a dropped connection
                last_used = time.monotonic()
            if conn is None:
                return self._bounded(await self._open_new(deadline), deadline)
            try:
                healthy = await self._healthy(self._bounded(conn, deadline), last_used, deadline)
            except BaseException:  # cancelled while pinging: it is neither lent nor idle
                self._discard(conn)
                raise
            if healthy:
                return conn
            await self._drop(conn)

    def give_back(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Return a borrowed connection; one left broken or inside a transaction is closed instead."""
        if conn.closed or conn.broken or conn.info.transaction_status != TransactionStatus.IDLE:
            self._discard(conn)
            return
        if self.socket_timeout_ms is not None and is_tcp(conn):
            set_user_timeout(conn, self.socket_timeout_ms)  # a waiter bounds it by its own deadline
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self._idle.append((conn, time.monotonic()))

    async def close(self) -> None:
        """Close the idle connections (lent ones are closed when given back after this)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        idle, self._idle = self._idle, []
        self._open -= len(idle)
        for conn, _ in idle:
            await close_quietly_async(conn)

    # -- inside -------------------------------------------------------------------

    def _bounded(self, conn: psycopg.AsyncConnection[Any], deadline: float) -> psycopg.AsyncConnection[Any]:
        if self.socket_timeout_ms is not None and is_tcp(conn):
            bound_by_deadline(conn, deadline)
        return conn

    async def _wait(self, deadline: float) -> psycopg.AsyncConnection[Any] | None:
        # Kept cheap: when a thousand callers arrive at once, each one's first step ends here.
        waiter: asyncio.Future[psycopg.AsyncConnection[Any] | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._deadlines[waiter] = deadline
        if self._sweeper is None:
            self._schedule_sweep(deadline)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._pass_on(waiter.result())  # handed over just as the caller gave up
            raise
        finally:
            self._deadlines.pop(waiter, None)

    def _schedule_sweep(self, when: float) -> None:
        self._sweeper = asyncio.get_running_loop().call_later(max(0.0, when - time.monotonic()), self._sweep)

    def _sweep(self) -> None:
        """Fail the waiters whose deadline passed: one timer for all of them rather than one each."""
        self._sweeper = None
        now = time.monotonic()
        for waiter, deadline in list(self._deadlines.items()):
            if deadline <= now and not waiter.done():
                waiter.set_exception(self._busy_error())
        pending = [deadline for waiter, deadline in self._deadlines.items() if not waiter.done()]
        if pending:
            self._schedule_sweep(min(pending))

    def _pass_on(self, conn: psycopg.AsyncConnection[Any] | None) -> None:
        if conn is None:
            self._free_slot()
        else:
            self.give_back(conn)

    def _free_slot(self) -> None:
        """A connection is gone: let a waiter open one in its place."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._open -= 1

    def _discard(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._free_slot()
        if not conn.closed:
            # Closing sends a Terminate: done in the background, the caller is not made to wait.
            task = asyncio.get_running_loop().create_task(close_quietly_async(conn))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _drop(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._free_slot()
        await close_quietly_async(conn)

    async def _open_new(self, deadline: float) -> psycopg.AsyncConnection[Any]:
        try:
            conn = await self._connect(deadline)
        except BaseException as exc:
            self._last_failure = first_line(exc)
            self._free_slot()
            raise
        self._last_failure = None
        self.opened += 1
        return conn

    async def _healthy(self, conn: psycopg.AsyncConnection[Any], last_used: float, deadline: float) -> bool:
        if conn.closed or conn.broken:
            return False
        if time.monotonic() - last_used <= IDLE_CHECK_SECONDS:
            return True
        # It sat idle: the server may have closed it meanwhile (restart, failover, terminate).
        try:
            await asyncio.wait_for(conn.execute("SELECT 1"), max(0.01, deadline - time.monotonic()))
        except (psycopg.Error, asyncio.TimeoutError):
            return False
        return True

    def _busy_error(self) -> DatabaseUnreachableError:
        why = f" (the last attempt to open one failed: {self._last_failure})" if self._last_failure else ""
        return DatabaseUnreachableError(
            f"no connection of the async pool {self.name!r} ({self.size}) came free in time{why}; raise "
            "QUEUER_DB_POOL_SIZE or QUEUER_DB_TIMEOUT"
        )


class AsyncDatabase:
    """The async client's side of a ``Database``: the same statements, channel and parameters, async connections."""

    def __init__(self, db: Database, size: int | None = None) -> None:
        self.db = db
        self.queries = db.queries
        self.channel = db.channel
        self.pool = AsyncConnectionPool(db.name, size or db.config.pool_size, db.connect_async,
                                        db.pool.socket_timeout_ms)

    def deadline(self) -> float:
        return self.db.deadline()

    @asynccontextmanager
    async def connection(self, deadline: float | None = None) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled autocommit connection with dict rows, for the caller alone inside the block."""
        conn = await self.pool.borrow(self.deadline() if deadline is None else deadline)
        with self.lent(conn):
            yield conn

    @contextmanager
    def lent(self, conn: psycopg.AsyncConnection[Any]) -> Iterator[None]:
        """Give ``conn`` (borrowed from the pool) back at the block's end; psycopg's errors as queuer's."""
        try:
            yield
        except BaseException as exc:
            self.pool.give_back(conn)
            translated = queuer_error(exc, conn.broken or conn.closed, self.db.config.describe())
            if translated is not None:
                raise translated from exc
            raise
        self.pool.give_back(conn)

    async def execute(self, query: Any, params: Any = None) -> list[dict[str, Any]]:
        """Run one statement on a pooled connection and return all its rows."""
        async with self.connection() as conn:
            cur = await conn.execute(query, params)
            return await cur.fetchall() if cur.description else []

    async def execute_one(self, query: Any, params: Any = None) -> dict[str, Any] | None:
        rows = await self.execute(query, params)
        return rows[0] if rows else None

    async def close(self) -> None:
        await self.pool.close()
