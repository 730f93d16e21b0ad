"""Every connection queuer makes: pools, the session connection, reconnects and fork.

One ``Database`` per Queuer. It owns

* one small pool (``QUEUER_DB_POOL_SIZE``, 3) for every statement: enqueue,
  reads, the worker's claims and outcomes, heartbeat and master duties;
* session connections on request (``connect_session``: the LISTEN connection
  that also carries the worker's liveness lock).

Behind a transaction pooler (``QUEUER_DB_POOLER=transaction``) nothing may
outlive a transaction: no prepared statements and no session settings, and a
session exists only through ``QUEUER_DB_DIRECT_URL``.

The pools are small and plain on purpose, so their behaviour fits in one's
head: a borrower takes the most recently used idle connection (pinged first if
it sat idle), or opens a new one while the pool is below its size, or waits
for one to come back. Opening retries every few hundred milliseconds until the
caller's deadline, so a restarted or promoted server is used again as soon as
it accepts connections, and nothing ever "gives up" for good. No background
thread: an idle process holds its idle connections and nothing else.

A process forked from the one that opened the pools (gunicorn --preload,
multiprocessing) never touches the parent's connections: the first use in the
child sees the new pid and starts over; the inherited connections are kept
referenced, never used and never closed (closing would end the parent's sessions).

Callers see only queuer's errors: DatabaseUnreachableError after the wait,
naming the server (never the password).
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row

from queuer.database.queries import Queries
from queuer.errors import ConfigurationError, ConnectionLostError, DatabaseUnreachableError, QueuerError
from queuer.helper.config import DatabaseConfiguration

log = logging.getLogger("queuer.database")

# A connection idle for longer than this is pinged before it is handed out.
IDLE_CHECK_SECONDS = 1.0
# Idle connections beyond what a quiet process keeps are closed after this long unused.
IDLE_TRIM_SECONDS = 5.0
# Reconnect attempts start this far apart and back off to the ceiling.
RECONNECT_FIRST_DELAY = 0.05
RECONNECT_MAX_DELAY = 0.5

# Planner settings of pooled connections: only index scans are left. With the
# stale statistics of a table that just grew from empty, the planner would
# otherwise sort or scan the whole queue on every claim. They are plain SETs
# after connecting (no startup "options", which poolers refuse), and left out
# behind a transaction pooler (where a session setting would leak to others).
HOT_PATH_SETTINGS = (
    "SET enable_sort = off; SET enable_bitmapscan = off; SET enable_seqscan = off;"
    " SET enable_hashjoin = off; SET enable_mergejoin = off;"
    # A disabled node still in a plan (the small sort of serial keys) makes its
    # cost enormous, which would trigger JIT compilation: milliseconds per claim.
    " SET jit = off"
)

# TCP keepalives bound how long a vanished host (not a closed socket) goes unnoticed.
KEEPALIVE_DEFAULTS = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}


def channel_name(schema: str) -> str:
    """The NOTIFY channel of a schema (one per schema, all events on it)."""
    return f"queuer.{schema}"


class _Pool:
    """At most ``size`` autocommit connections with dict rows, opened on demand."""

    def __init__(self, name: str, size: int, connect: Callable[[float], psycopg.Connection[Any]]) -> None:
        self.name = name
        self.size = size
        self.keep_idle = size  # idle connections kept once quiet
        self._trimmer: threading.Timer | None = None
        self._connect = connect
        self._cond = threading.Condition()
        self._idle: list[tuple[psycopg.Connection[Any], float]] = []  # (connection, last used)
        self._open = 0  # idle + lent out
        self._pid = os.getpid()
        self._inherited: list[psycopg.Connection[Any]] = []

    def borrow(self, deadline: float) -> psycopg.Connection[Any]:
        while True:
            with self._cond:
                self._check_fork()
                while not self._idle and self._open >= self.size:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise DatabaseUnreachableError(
                            f"all {self.size} connections of pool {self.name} stayed busy; "
                            "raise the pool size or the wait (QUEUER_DB_TIMEOUT)"
                        )
                    self._cond.wait(remaining)
                if self._idle:
                    conn, last_used = self._idle.pop()
                else:
                    self._open += 1
                    conn, last_used = None, 0.0
            if conn is None:
                try:
                    return self._connect(deadline)
                except BaseException:
                    self._forget()
                    raise
            # Before anything is sent: a connection the server closed meanwhile (restart,
            # failover, terminate) has its goodbye waiting to be read, which costs one
            # syscall to see. One that sat idle long is pinged (a vanished host says nothing).
            suspicious = _has_unread_data(conn) or time.monotonic() - last_used > IDLE_CHECK_SECONDS
            if not suspicious or _ping(conn):
                return conn
            self._discard(conn)

    def give_back(self, conn: psycopg.Connection[Any]) -> None:
        if os.getpid() != self._pid:
            return  # lent out before a fork: the parent's, not ours
        healthy = not conn.closed and conn.info.transaction_status == TransactionStatus.IDLE
        if not healthy:
            self._discard(conn)
            return
        with self._cond:
            self._idle.append((conn, time.monotonic()))
            if self._trimmer is None:
                self._schedule_trim()
            self._cond.notify()

    def _schedule_trim(self) -> None:
        """Under the lock: more idle connections than a quiet process keeps are closed once quiet."""
        if len(self._idle) > self.keep_idle:
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
            # The least recently used sit at the front.
            old = [entry for entry in self._idle[:extra] if entry[1] <= cutoff]
            self._idle = self._idle[len(old):]
            self._open -= len(old)
            self._schedule_trim()
        for conn, _ in old:
            _close_quietly(conn)

    def _discard(self, conn: psycopg.Connection[Any]) -> None:
        _close_quietly(conn)
        self._forget()

    def _forget(self) -> None:
        with self._cond:
            self._open -= 1
            self._cond.notify()

    def _check_fork(self) -> None:
        if os.getpid() != self._pid:
            self._trimmer = None  # its thread stayed in the parent
            self._inherited.extend(conn for conn, _ in self._idle)
            self._idle.clear()
            self._open = 0
            self._pid = os.getpid()

    def close(self) -> None:
        with self._cond:
            self._check_fork()
            idle, self._idle = self._idle, []
            self._open -= len(idle)
        for conn, _ in idle:
            _close_quietly(conn)



def check_callers_connection(conn: Any) -> psycopg.Connection[Any]:
    """The caller's own psycopg connection (a web framework's) for a transactional enqueue."""
    if conn is None:
        raise TypeError(
            "add_job_tx needs an open psycopg connection, got None; with Django pass "
            "django.db.connection.connection after connection.ensure_connection(), with SQLAlchemy "
            "conn.connection.driver_connection"
        )
    if not isinstance(conn, psycopg.Connection):
        raise TypeError(
            f"add_job_tx needs a psycopg 3 connection, not {type(conn).__module__}.{type(conn).__name__} "
            "(for a framework's wrapper, pass the psycopg connection inside it)"
        )
    if conn.closed or conn.broken:
        raise ValueError("add_job_tx was given a closed connection: enqueue inside an open transaction")
    return conn


@contextmanager
def on_callers_connection(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """Statements on the caller's connection raise queuer's errors, never the driver's."""
    try:
        yield
    except psycopg.OperationalError as exc:
        if conn.broken or conn.closed:
            raise ConnectionLostError(
                f"the connection broke inside your transaction ({_first_line(exc)}): nothing of the "
                "transaction was committed, this job included"
            ) from exc
        raise QueuerError(f"the job could not be added on your connection: {_first_line(exc)}") from exc
    except psycopg.Error as exc:
        raise QueuerError(f"the job could not be added on your connection: {_first_line(exc)}") from exc


def _close_quietly(conn: psycopg.Connection[Any]) -> None:
    try:
        conn.close()
    except Exception:
        pass  # it is being dropped anyway


def _has_unread_data(conn: psycopg.Connection[Any]) -> bool:
    """True when the server sent something to an idle connection: usually that it is closing it."""
    try:
        readable, _, _ = select.select([conn.pgconn.socket], [], [], 0)
    except (OSError, ValueError, psycopg.Error):
        return True
    return bool(readable)


def _ping(conn: psycopg.Connection[Any]) -> bool:
    try:
        conn.execute("")
        return True
    except psycopg.Error:
        return False


class Database:
    """Everything a Queuer needs to talk to PostgreSQL for one schema."""

    def __init__(
        self,
        config: DatabaseConfiguration,
        *,
        name: str = "queuer",
    ) -> None:
        self.config = config
        self.schema = config.schema
        self.queries = Queries(config.schema)
        self.channel = channel_name(config.schema)
        self.timeout = config.timeout
        self.name = name
        self._role = "producer"
        #: statements may be prepared server-side (not behind a transaction pooler)
        self.prepare: bool | None = None if config.transaction_pooled else True
        self._kwargs: dict[str, Any] = {**config.connect_kwargs(), "autocommit": True}
        for key, value in KEEPALIVE_DEFAULTS.items():
            self._kwargs.setdefault(key, value)
        settings: str | None = HOT_PATH_SETTINGS
        if config.transaction_pooled:
            self._kwargs["prepare_threshold"] = None
            settings = None
        self.pool = _Pool(name, config.pool_size, lambda deadline: self._connect(deadline, settings))
        self.pool.keep_idle = 1
        session = config.session_kwargs()
        self._session_kwargs: dict[str, Any] | None = None
        if session is not None:
            self._session_kwargs = {**session, "autocommit": True}
            for key, value in KEEPALIVE_DEFAULTS.items():
                self._session_kwargs.setdefault(key, value)

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
        return self._session_kwargs is not None

    # -- life cycle ---------------------------------------------------------

    def wait_until_reachable(self, wait: float) -> None:
        """Block until the server takes a connection, logging progress; DatabaseUnreachableError after ``wait``."""
        deadline = time.monotonic() + wait
        started = time.monotonic()
        next_report = started + 5.0
        while True:
            try:
                with self.connection(deadline=min(deadline, time.monotonic() + 5.0)):
                    return
            except DatabaseUnreachableError:
                now = time.monotonic()
                if now >= deadline:
                    raise
                if now >= next_report:
                    log.warning("waiting for PostgreSQL at %s (%.0f s so far, giving up after %.0f s)",
                                self.config.describe(), now - started, wait)
                    next_report = now + 5.0

    def close(self) -> None:
        self.pool.close()

    # -- connections --------------------------------------------------------

    @contextmanager
    def connection(self, deadline: float | None = None) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """A pooled autocommit connection with dict rows."""
        with self._borrow(self.pool, deadline) as conn:
            yield conn

    @contextmanager
    def _borrow(self, pool: _Pool, deadline: float | None) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        conn = pool.borrow(time.monotonic() + self.timeout if deadline is None else deadline)
        try:
            yield conn
        except (psycopg.errors.DuplicatePreparedStatement, psycopg.errors.InvalidSqlStatementName,
                psycopg.errors.ProtocolViolation) as exc:
            pool.give_back(conn)
            if isinstance(exc, psycopg.errors.ProtocolViolation) and "prepared statement" not in str(exc):
                raise
            raise ConfigurationError(
                f"a prepared statement went missing or changed between statements ({_first_line(exc)}): a transaction "
                "pooler (PgBouncer pool_mode=transaction) is in between; set QUEUER_DB_POOLER=transaction"
            ) from exc
        except psycopg.OperationalError as exc:
            if conn.broken or conn.closed:
                pool.give_back(conn)
                raise ConnectionLostError(
                    f"lost the connection to PostgreSQL at {self.config.describe()}: {_first_line(exc)}"
                ) from exc
            pool.give_back(conn)
            raise
        except BaseException:
            pool.give_back(conn)
            raise
        pool.give_back(conn)

    def connect_session(self, deadline: float | None = None) -> psycopg.Connection[dict[str, Any]]:
        """A connection of its own, outside the pool (LISTEN and the liveness lock need one)."""
        if self._session_kwargs is None:
            raise DatabaseUnreachableError("no session connection behind a transaction pooler: set QUEUER_DB_DIRECT_URL")
        return self._connect(time.monotonic() + self.timeout if deadline is None else deadline,
                             role="session", kwargs=self._session_kwargs)

    def _connect(self, deadline: float, settings: str | None = None, role: str | None = None,
                 kwargs: dict[str, Any] | None = None) -> psycopg.Connection[Any]:
        """Open a connection, retrying until ``deadline`` (a server may be starting or failing over)."""
        delay = RECONNECT_FIRST_DELAY
        kwargs = {**(kwargs or self._kwargs), "application_name": self._application_name(role or self.role)}
        while True:
            remaining = deadline - time.monotonic()
            try:
                conn = psycopg.connect(**kwargs, connect_timeout=max(1, int(min(remaining, 10) + 0.999)),
                                       row_factory=dict_row)
                if settings:
                    conn.execute(settings)  # type: ignore[arg-type]
                return conn
            except psycopg.Error as exc:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or _refused_for_good(exc):
                    raise DatabaseUnreachableError(
                        f"cannot connect to PostgreSQL at {self.config.describe()}: {_first_line(exc)}. "
                        "Check QUEUER_DB_HOST/PORT/DATABASE/USERNAME/PASSWORD (or QUEUER_DB_URL) "
                        "and that the server is running."
                    ) from None
                time.sleep(min(delay, remaining))
                delay = min(delay * 2, RECONNECT_MAX_DELAY)

    def _application_name(self, role: str) -> str:
        given = self.config.extra.get("application_name")
        if given:
            return str(given)
        return f"queuer:{self.name}:{role}"[:63]

    # -- helpers ------------------------------------------------------------

    def execute(self, query: str, params: Any = None) -> list[dict[str, Any]]:
        """Run one statement on a pooled connection and return all its rows."""
        with self.connection() as conn:
            cur = conn.execute(query, params)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []

    def execute_one(self, query: str, params: Any = None) -> dict[str, Any] | None:
        rows = self.execute(query, params)
        return rows[0] if rows else None


# Answers that waiting will not change: bad credentials, no such database or role.
_FINAL_SQLSTATE_CLASSES = ("28", "3D")
_FINAL_MESSAGES = ("password authentication failed", "does not exist", "no pg_hba.conf entry",
                   "authentication failed", "invalid connection option")


def _refused_for_good(exc: psycopg.Error) -> bool:
    if exc.sqlstate and exc.sqlstate[:2] in _FINAL_SQLSTATE_CLASSES:
        return True
    text = str(exc)
    return any(fragment in text for fragment in _FINAL_MESSAGES)


def _first_line(exc: BaseException) -> str:
    # libpq's messages name host and port, never the password.
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
