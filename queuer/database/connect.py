"""Opening one connection: retried while the server is not reachable yet, refused at once when waiting can't help.

A server that is starting, restarting or failing over is tried again every
few hundred milliseconds until the caller's deadline. An answer that waiting
will not change (a wrong password, an unknown role or database, a pg_hba.conf
rejection, TLS the server refuses, an invalid parameter) raises
``ConfigurationError`` on the first attempt, naming what to fix: one FATAL
line in the server's log instead of one every few milliseconds.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

import psycopg

from queuer.database.backoff import Backoff
from queuer.errors import ConfigurationError, DatabaseUnreachableError

# libpq raises any connect_timeout below 2 s to 2 s, and 10 s bounds one attempt of ours.
MIN_ATTEMPT_SECONDS = 2
MAX_ATTEMPT_SECONDS = 10

# Answers that waiting will not change: (alternatives, each a set of fragments that must all
# appear in the lower-cased message) and what to fix.
_REFUSALS: tuple[tuple[tuple[tuple[str, ...], ...], str], ...] = (
    ((("password authentication failed",), ("authentication failed for user",)),
     "wrong user name or password: check QUEUER_DB_USERNAME and QUEUER_DB_PASSWORD "
     "(or the user and password in QUEUER_DB_URL)"),
    ((("no password supplied",), ("password is required",)),
     "the server asks for a password: set QUEUER_DB_PASSWORD (or put it in QUEUER_DB_URL)"),
    ((("role", "does not exist"),),
     "no such role: check QUEUER_DB_USERNAME, or create the role (CREATE ROLE ... LOGIN)"),
    ((("database", "does not exist"),),
     "no such database: check QUEUER_DB_DATABASE, or create it (createdb)"),
    ((("no pg_hba.conf entry",), ("pg_hba.conf rejects",)),
     "the server's pg_hba.conf does not admit this host, user and database: "
     "add an entry there, or connect as a user it admits"),
    ((("is not permitted to log in",),),
     "the role may not log in: ALTER ROLE ... LOGIN, or use another QUEUER_DB_USERNAME"),
    ((("permission denied for database",),),
     "the role may not connect to this database: GRANT CONNECT, or use another QUEUER_DB_DATABASE"),
    ((("ssl was required",), ("does not support ssl",), ("certificate verify failed",),
      ("could not read certificate",), ("could not load private key",), ("root certificate file",),
      ("invalid sslmode",), ("sslmode value",), ("server certificate for",)),
     "TLS could not be set up as asked: check QUEUER_DB_SSLMODE (or sslmode and the ssl* files in "
     "QUEUER_DB_URL) against the server's ssl setting"),
    ((("invalid connection option",), ("invalid integer value",), ("invalid value for parameter",),
      ("invalid port",), ("invalid sslmode",), ("invalid target_session_attrs",), ("invalid uri",),
      ('missing "="',), ("unterminated quoted",), ("unrecognized configuration parameter",)),
     "a connection parameter is invalid: fix it in QUEUER_DB_URL or QUEUER_DB_*"),
    ((("permission denied to set parameter",),),
     "a setting in the connection's options needs more privileges than the role has: "
     "remove it from options (or PGOPTIONS), or grant it"),
)
# SQLSTATE classes that waiting does not change: 28 invalid authorization, 3D invalid catalog name.
_FINAL_SQLSTATE_CLASSES = ("28", "3D")


def refusal(exc: BaseException) -> str | None:
    """What to fix when ``exc`` is an answer that waiting will not change; None when it may pass."""
    text = str(exc).lower()
    for alternatives, advice in _REFUSALS:
        if any(all(fragment in text for fragment in fragments) for fragments in alternatives):
            return advice
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate and sqlstate[:2] in _FINAL_SQLSTATE_CLASSES:
        return ("the server refused this user or database: check QUEUER_DB_USERNAME, QUEUER_DB_PASSWORD "
                "and QUEUER_DB_DATABASE")
    return None


def first_line(exc: BaseException) -> str:
    """An error's first line: libpq's messages name host and port, never the password."""
    text = str(exc).strip()
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line
    return type(exc).__name__


def attempt_timeout(remaining: float, hosts: int = 1) -> int:
    """connect_timeout for one attempt with ``remaining`` seconds left, in libpq's whole seconds.

    libpq applies it to each host of a multi-host list in turn, so the time is shared among them.
    """
    return max(MIN_ATTEMPT_SECONDS, min(MAX_ATTEMPT_SECONDS, math.ceil(remaining / max(1, hosts))))


def host_count(kwargs: dict[str, Any]) -> int:
    """How many hosts libpq will try in turn ("db1,db2" is two)."""
    return max(1, str(kwargs.get("host") or kwargs.get("hostaddr") or "").count(",") + 1)


def open_connection(
    kwargs: dict[str, Any],
    deadline: float,
    *,
    describe: str,
    set_statement: str | None = None,
    own_connect_timeout: bool = True,
    own_user_timeout: bool = False,
    row_factory: Any = None,
    on_failure: Callable[[BaseException], None] | None = None,
) -> psycopg.Connection[Any]:
    """An autocommit connection opened with ``kwargs``, tried again until ``deadline`` (time.monotonic()).

    ``set_statement`` runs once connected; a connection whose setup fails is
    closed, never leaked. ``own_connect_timeout``: pass a connect_timeout of
    ours per attempt (False when the user gave one, which then wins). ``own_user_timeout``: an attempt
    with less time left than libpq's shortest connect_timeout (2 s) also gets a TCP user timeout of the
    time left, so that a host that does not answer fails it by the deadline, not 2 s after.
    ``on_failure`` hears of every failed attempt (the pool reports the last one).
    """
    backoff = Backoff(first=0.05, ceiling=0.5)
    if deadline - time.monotonic() <= 0:
        raise _out_of_time(describe)
    while True:
        conn: psycopg.Connection[Any] | None = None
        try:
            conn = psycopg.connect(**_attempt_params(kwargs, deadline, own_connect_timeout, own_user_timeout,
                                                     row_factory), autocommit=True)
            if set_statement:
                conn.execute(set_statement.encode())
            return conn
        except psycopg.Error as exc:
            if conn is not None:
                close_quietly(conn)
            if on_failure is not None:
                on_failure(exc)
            time.sleep(_wait_after(exc, describe, deadline, backoff))


def close_quietly(conn: psycopg.Connection[Any]) -> None:
    try:
        conn.close()
    except Exception:
        pass  # it is being dropped anyway


async def open_async_connection(
    kwargs: dict[str, Any],
    deadline: float,
    *,
    describe: str,
    set_statement: str | None = None,
    own_connect_timeout: bool = True,
    own_user_timeout: bool = False,
    row_factory: Any = None,
) -> psycopg.AsyncConnection[Any]:
    """``open_connection`` for asyncio: the same parameters, retries, refusals and errors, never blocking the loop."""
    backoff = Backoff(first=0.05, ceiling=0.5)
    if deadline - time.monotonic() <= 0:
        raise _out_of_time(describe)
    while True:
        conn: psycopg.AsyncConnection[Any] | None = None
        try:
            conn = await psycopg.AsyncConnection.connect(
                **_attempt_params(kwargs, deadline, own_connect_timeout, own_user_timeout, row_factory), autocommit=True)
            if set_statement:
                await conn.execute(set_statement.encode())
            return conn
        except psycopg.Error as exc:
            if conn is not None:
                await close_quietly_async(conn)
            await asyncio.sleep(_wait_after(exc, describe, deadline, backoff))


async def close_quietly_async(conn: psycopg.AsyncConnection[Any]) -> None:
    try:
        await conn.close()
    except Exception:
        pass  # it is being dropped anyway


def _attempt_params(kwargs: dict[str, Any], deadline: float, own_connect_timeout: bool, own_user_timeout: bool,
                    row_factory: Any) -> dict[str, Any]:
    """The user's parameters, and ours for one attempt made now (see ``open_connection``)."""
    remaining = deadline - time.monotonic()
    params = dict(kwargs)
    if own_connect_timeout:
        params["connect_timeout"] = attempt_timeout(remaining, host_count(kwargs))
    if own_user_timeout and remaining < MIN_ATTEMPT_SECONDS:
        params["tcp_user_timeout"] = max(1, int(remaining * 1000))
    if row_factory is not None:
        params["row_factory"] = row_factory
    return params


def _wait_after(exc: psycopg.Error, describe: str, deadline: float, backoff: Backoff) -> float:
    """How long to wait before the next attempt; raises when waiting cannot help or the time is up."""
    advice = refusal(exc)
    if advice is not None:
        raise _refused(describe, exc, advice) from None
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise _unreachable(describe, exc) from None
    return min(backoff.next(), remaining)


def _out_of_time(describe: str) -> DatabaseUnreachableError:
    return DatabaseUnreachableError(
        f"cannot connect to PostgreSQL at {describe}: the call's time ran out before a connection "
        "could be opened (QUEUER_DB_TIMEOUT sets how long a call waits)"
    )


def _unreachable(describe: str, exc: BaseException) -> DatabaseUnreachableError:
    return DatabaseUnreachableError(
        f"cannot connect to PostgreSQL at {describe}: {first_line(exc)}. Check that the server is "
        "running and reachable from here (QUEUER_DB_HOST/PORT or QUEUER_DB_URL); "
        "QUEUER_DB_TIMEOUT sets how long a call waits"
    )


def _refused(describe: str, exc: BaseException, advice: str) -> ConfigurationError:
    return ConfigurationError(f"PostgreSQL at {describe} refused the connection ({first_line(exc)}): {advice}")
