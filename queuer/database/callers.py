"""The caller's own connection (a web framework's), for enqueueing inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from queuer.database.connect import first_line
from queuer.errors import ConnectionLostError, QueuerError


def check_callers_connection(conn: Any) -> psycopg.Connection[Any]:
    """The caller's psycopg connection, or a TypeError/ValueError that says what to pass instead."""
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


def check_callers_async_connection(conn: Any) -> psycopg.AsyncConnection[Any]:
    """The caller's psycopg AsyncConnection, or a TypeError/ValueError that says what to pass instead."""
    if not isinstance(conn, psycopg.AsyncConnection):
        kind = "None" if conn is None else f"{type(conn).__module__}.{type(conn).__name__}"
        raise TypeError(f"the async add_job_tx needs an open psycopg.AsyncConnection, not {kind}")
    if conn.closed or conn.broken:
        raise ValueError("add_job_tx was given a closed connection: enqueue inside an open transaction")
    return conn


def join_callers_transaction(conn: psycopg.Connection[Any]) -> None:
    """Before a batch on the caller's connection: a transaction() block on a connection that is not in
    autocommit and has no transaction open yet would be the outer one, and commit the batch at its end.
    One statement first opens the caller's transaction (as any first statement would), so the batch is a
    savepoint inside it and stands or falls with it."""
    if not conn.autocommit and conn.info.transaction_status == TransactionStatus.IDLE:
        conn.execute("SELECT 1")


async def join_callers_transaction_async(conn: psycopg.AsyncConnection[Any]) -> None:
    """``join_callers_transaction`` for an AsyncConnection."""
    if not conn.autocommit and conn.info.transaction_status == TransactionStatus.IDLE:
        await conn.execute("SELECT 1")


@contextmanager
def on_callers_connection(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> Iterator[None]:
    """Statements on the caller's connection raise queuer's errors, never the driver's."""
    try:
        yield
    except psycopg.OperationalError as exc:
        if conn.broken or conn.closed:
            raise ConnectionLostError(
                f"the connection broke inside your transaction ({first_line(exc)}): nothing of the "
                "transaction was committed, this job included"
            ) from exc
        raise QueuerError(f"the job could not be added on your connection: {first_line(exc)}") from exc
    except psycopg.Error as exc:
        raise QueuerError(f"the job could not be added on your connection: {first_line(exc)}") from exc
