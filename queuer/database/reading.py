"""Reads that count and sort (the web UI's pages): one short read-only transaction, planned as usual.

Pooled connections carry HOT_PATH_SETTINGS, planner switches that leave only
index scans, right for the claim and wrong for a read that aggregates or
sorts. ``read_transaction`` switches every plan node type they turn off back
on, for its transaction only; jit stays off (a page is not worth compiling
for). It also plans each statement for its parameters' values even once
psycopg has prepared it: statements with optional filters written as
``(%(x)s IS NULL OR column = %(x)s)`` use their indexes only in such a plan.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from queuer.database.connection import Database
from queuer.database.params import HOT_PATH_SETTINGS

NODE_TYPES_ON = " ".join(f"SET LOCAL {name} = on;" for name, value in HOT_PATH_SETTINGS
                         if name.startswith("enable_") and value == "off")


def read_settings(timeout_seconds: float) -> str:
    """The statement that opens a read transaction (the timeout in whole milliseconds, at least one)."""
    timeout_ms = max(1, int(timeout_seconds * 1000))
    return (f"SET TRANSACTION READ ONLY; {NODE_TYPES_ON} SET LOCAL plan_cache_mode = force_custom_plan;"
            f" SET LOCAL statement_timeout = {timeout_ms}")


@contextmanager
def read_transaction(db: Database, timeout_seconds: float = 10.0) -> Iterator[psycopg.Cursor[dict[str, Any]]]:
    """A cursor in a read-only transaction on a pooled connection; each statement may take ``timeout_seconds``."""
    with db.connection() as conn:
        with conn.transaction():
            conn.execute(read_settings(timeout_seconds))
            # The pool's connections read a value Python cannot decode as Undecodable: the pages show why.
            yield conn.cursor()
