"""ConnectionPool: at most ``size`` connections, opened on demand, never given up on.

Plain on purpose, so its behaviour fits in one's head: a borrower takes the
most recently used idle connection (pinged first if it sat idle), or opens a
new one while the pool is below its size, or waits for one to come back.
Opening retries until the caller's deadline (see ``connect.open_connection``),
so a restarted or promoted server is used again as soon as it takes
connections.

Every borrow is bounded by its deadline down to the socket: the connection's
TCP user timeout is set to the time left (and set back when it is given
back), so a statement sent to a host that vanished fails when the caller's
time is up instead of when the kernel gives up. A user who set
``tcp_user_timeout`` keeps exactly that.

A process forked from the one that opened the pool (gunicorn --preload,
multiprocessing) never touches the parent's connections: right after the
fork the child's pool starts over with a fresh lock (another thread may have
held the old one at the fork); the inherited connections are kept referenced,
never used and never closed (closing would end the parent's sessions).

The one thread of its own is a timer that closes idle connections beyond
``keep_idle`` once they sat unused for ``IDLE_TRIM_SECONDS``; ``close()``
cancels it.
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from queuer.database.connect import close_quietly, first_line
from queuer.database.forks import start_over_after_fork
from queuer.errors import DatabaseUnreachableError

# A connection idle for longer than this is pinged before it is handed out.
IDLE_CHECK_SECONDS = 1.0
# Idle connections beyond what a quiet process keeps are closed after this long unused.
IDLE_TRIM_SECONDS = 5.0
# A failed attempt to open a connection counts as "the server is down" for this long.
RECENT_FAILURE_SECONDS = 30.0

_TCP_USER_TIMEOUT = getattr(socket, "TCP_USER_TIMEOUT", None)
_MAX_USER_TIMEOUT_MS = 2**31 - 1

Connect = Callable[[float], psycopg.Connection[Any]]


class _Idle:
    """An idle connection and what the pool knows of it."""

    __slots__ = ("conn", "last_used", "tcp")

    def __init__(self, conn: psycopg.Connection[Any], last_used: float, tcp: bool) -> None:
        self.conn = conn
        self.last_used = last_used
        self.tcp = tcp


class ConnectionPool:
    """At most ``size`` autocommit connections, opened by ``connect(deadline)``."""

    def __init__(self, name: str, size: int, connect: Connect, socket_timeout_ms: int | None = None) -> None:
        self.name = name
        self.socket_timeout_ms = socket_timeout_ms
        """The TCP user timeout connections keep while idle; each borrow bounds it by the caller's deadline meanwhile.
        None: leave the sockets alone (the user chose tcp_user_timeout).
        """
        self.size = size
        self.keep_idle = size  # idle connections kept once quiet
        self._connect = connect
        self._cond = threading.Condition()
        self._idle: list[_Idle] = []  # least recently used first
        self._open = 0  # idle + lent out + being opened
        self._lent: dict[int, bool] = {}  # id(conn) -> over TCP, for connections lent out now
        self._trimmer: threading.Timer | None = None
        self._closed = False
        self._pid = os.getpid()
        self._inherited: list[psycopg.Connection[Any]] = []
        self._last_failure: tuple[float, str] | None = None  # (when, why) the last open failed
        self.pings = 0
        """Connections pinged before being handed out (a health figure, and what tests check)."""
        self.opened = 0
        """Connections opened over the pool's life."""
        start_over_after_fork(self)

    # -- borrowing --------------------------------------------------------------

    def borrow(self, deadline: float) -> psycopg.Connection[Any]:
        """A connection for the caller alone until ``give_back``; DatabaseUnreachableError after ``deadline``."""
        while True:
            with self._cond:
                self._closed = False
                while not self._idle and self._open >= self.size:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise self._busy_error()
                    self._cond.wait(remaining)
                entry = self._idle.pop() if self._idle else None
                if entry is None:
                    self._open += 1
            if entry is None:
                return self._open_new(deadline)
            try:
                if self._ready(entry, deadline):
                    return entry.conn
            except BaseException:  # interrupted while checking it: it is neither lent nor idle
                self._discard(entry.conn)
                raise
            self._discard(entry.conn)
            if time.monotonic() >= deadline:
                raise DatabaseUnreachableError(
                    f"the connection of pool {self.name} stopped answering and the call's time ran out; "
                    "the server may be unreachable (QUEUER_DB_TIMEOUT sets how long a call waits)"
                )

    def _ready(self, entry: _Idle, deadline: float) -> bool:
        """Lend ``entry`` if it is fit for use; False when it must be discarded."""
        conn = entry.conn
        if entry.tcp:
            self._bound_socket(conn, deadline)
        # Before anything is sent: a connection the server closed meanwhile (restart,
        # failover, terminate) has its goodbye waiting to be read, which one poll() sees.
        # One that sat idle long is pinged (a vanished host says nothing).
        suspicious = _has_unread_data(conn) or time.monotonic() - entry.last_used > IDLE_CHECK_SECONDS
        if suspicious:
            with self._cond:
                self.pings += 1
            if not _ping(conn):
                return False
        self._lend(conn, entry.tcp)
        return True

    def give_back(self, conn: psycopg.Connection[Any]) -> None:
        with self._cond:
            if id(conn) not in self._lent:
                return  # lent out before a fork: the parent's, never ours to use or close
            tcp = self._lent.pop(id(conn))
        healthy = not conn.closed and conn.info.transaction_status == TransactionStatus.IDLE
        if healthy and tcp:
            self._unbound_socket(conn)
        if not healthy:
            self._discard(conn)
            return
        with self._cond:
            self._idle.append(_Idle(conn, time.monotonic(), tcp))
            if self._trimmer is None:
                self._schedule_trim()
            self._cond.notify()

    def _open_new(self, deadline: float) -> psycopg.Connection[Any]:
        try:
            conn = self._connect(deadline)
        except BaseException as exc:
            with self._cond:
                self._last_failure = (time.monotonic(), first_line(exc))
            self._forget()
            raise
        try:
            tcp = is_tcp(conn)
            with self._cond:
                self._last_failure = None
                self.opened += 1
            if tcp:
                self._bound_socket(conn, deadline)
            self._lend(conn, tcp)
        except BaseException:
            self._discard(conn)
            raise
        return conn

    def _lend(self, conn: psycopg.Connection[Any], tcp: bool) -> None:
        with self._cond:
            self._lent[id(conn)] = tcp

    def _bound_socket(self, conn: psycopg.Connection[Any], deadline: float) -> None:
        if self.socket_timeout_ms is not None:
            bound_by_deadline(conn, deadline)

    def _unbound_socket(self, conn: psycopg.Connection[Any]) -> None:
        """Back to the connection's own TCP user timeout while it sits idle."""
        if self.socket_timeout_ms is not None:
            set_user_timeout(conn, self.socket_timeout_ms)

    def _busy_error(self) -> DatabaseUnreachableError:
        """Under the lock: why a borrower waited in vain."""
        failure = self._last_failure
        if failure is not None and time.monotonic() - failure[0] < RECENT_FAILURE_SECONDS:
            return DatabaseUnreachableError(
                f"no connection of pool {self.name} could be had: the server is not taking connections "
                f"({failure[1]})"
            )
        return DatabaseUnreachableError(
            f"all {self.size} connections of pool {self.name} stayed busy; "
            "raise the pool size (QUEUER_DB_POOL_SIZE) or the wait (QUEUER_DB_TIMEOUT)"
        )

    # -- housekeeping -----------------------------------------------------------

    @property
    def open_count(self) -> int:
        """Connections open now: idle, lent out or being opened."""
        return self._open

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    def _schedule_trim(self) -> None:
        """Under the lock: more idle connections than a quiet process keeps are closed once quiet."""
        if len(self._idle) > self.keep_idle and not self._closed:
            self._trimmer = threading.Timer(IDLE_TRIM_SECONDS, self._trim)
            self._trimmer.daemon = True
            self._trimmer.start()

    def _trim(self) -> None:
        """Close idle connections beyond ``keep_idle`` that nobody used for IDLE_TRIM_SECONDS."""
        with self._cond:
            self._trimmer = None
            if self._pid != os.getpid():
                return
            cutoff = time.monotonic() - IDLE_TRIM_SECONDS
            extra = max(0, len(self._idle) - self.keep_idle)
            old = [entry for entry in self._idle[:extra] if entry.last_used <= cutoff]
            self._idle = self._idle[len(old):]
            self._open -= len(old)
            self._schedule_trim()
        for entry in old:
            close_quietly(entry.conn)

    def _discard(self, conn: psycopg.Connection[Any]) -> None:
        close_quietly(conn)
        self._forget()

    def _forget(self) -> None:
        with self._cond:
            self._open -= 1
            self._cond.notify()

    def after_fork_in_child(self) -> None:
        """In a forked child: start over, leaving the parent's connections and lock alone."""
        self._cond = threading.Condition()
        self._trimmer = None  # its thread stayed in the parent
        self._inherited.extend(entry.conn for entry in self._idle)
        self._idle = []
        self._lent = {}
        self._open = 0
        self._last_failure = None
        self._pid = os.getpid()

    def close(self) -> None:
        """Close the idle connections and the trim timer; the pool opens new ones if used again."""
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._open -= len(idle)
            trimmer, self._trimmer = self._trimmer, None
        if trimmer is not None:
            trimmer.cancel()
        for entry in idle:
            close_quietly(entry.conn)


def is_tcp(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    host = conn.info.host or ""
    return bool(host) and not host.startswith("/") and _TCP_USER_TIMEOUT is not None


def bound_by_deadline(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any], deadline: float) -> None:
    """Make the kernel drop the connection if what is sent stays unanswered past ``deadline``.

    Aimed at 90 % of the time left: the kernel looks at the timeout only when a
    retransmission is due, which can be a few hundred milliseconds late.
    """
    set_user_timeout(conn, int((deadline - time.monotonic()) * 900))


def set_user_timeout(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any], milliseconds: int) -> None:
    """Set the socket's TCP_USER_TIMEOUT (1 ms to what the kernel takes); the socket stays libpq's."""
    milliseconds = min(max(1, milliseconds), _MAX_USER_TIMEOUT_MS)
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, fileno=conn.pgconn.socket)
    except (OSError, psycopg.Error):
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, _TCP_USER_TIMEOUT, milliseconds)  # type: ignore[arg-type]
    except OSError:
        pass  # not a TCP socket after all; libpq's own timeouts still hold
    finally:
        sock.detach()  # the descriptor stays libpq's


def _has_unread_data(conn: psycopg.Connection[Any]) -> bool:
    """True when the server sent something to an idle connection: usually that it is closing it.

    poll(), not select(): select() cannot watch a descriptor numbered 1024 or
    above, which a process with many open files (a web server) hands out.
    """
    try:
        poller = select.poll()
        poller.register(conn.pgconn.socket, select.POLLIN | select.POLLPRI)
        return bool(poller.poll(0))
    except (OSError, ValueError, psycopg.Error):
        return True


def _ping(conn: psycopg.Connection[Any]) -> bool:
    try:
        conn.execute("")
        return True
    except psycopg.Error:
        return False
