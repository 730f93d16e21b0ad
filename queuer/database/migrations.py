"""Numbered schema migrations (``database/migrations/NNNN_name.sql``).

They are applied in order under a transaction-scoped advisory lock, so any
number of processes starting at once install the schema exactly once. A fast
check without the lock lets an up-to-date schema start with one query, and
lets roles without DDL rights (see the README's "Security") connect.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from queuer.config.database import quote_identifier
from queuer.database.admin import FUNCTIONS, TABLES
from queuer.database.statements import Queries

log = logging.getLogger("queuer.migrations")

_FILE_NAME = re.compile(r"^(\d{4})_(\w+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def available_migrations() -> list[Migration]:
    folder = resources.files("queuer.database") / "migrations"
    found = []
    for entry in folder.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migration files are not numbered 1..n without gaps: {versions}")
    return found


def latest_version() -> int:
    return len(available_migrations())


def installed_version(conn: psycopg.Connection[Any], schema: str) -> int:
    """The schema's version, 0 when queuer is not installed there."""
    statements = Queries(schema)
    cur = conn.cursor(row_factory=tuple_row)
    row = cur.execute(statements.relation_exists, {"name": f"{statements.schema_quoted}.schema_version"}).fetchone()
    if not row or not row[0]:
        return 0
    row = cur.execute(statements.installed_version).fetchone()
    return int(row[0]) if row else 0


def migrate(conn: psycopg.Connection[Any], schema: str, target: int | None = None) -> list[int]:
    """Bring ``schema`` up to ``target`` (default: latest); return the versions applied."""
    migrations = available_migrations()
    target = len(migrations) if target is None else target
    if installed_version(conn, schema) >= target:
        return []
    statements = Queries(schema)
    applied: list[int] = []
    with conn.transaction():
        conn.execute(statements.lock_schema_installers, {"schema": schema})
        conn.execute(statements.create_schema)
        conn.execute(statements.create_schema_version)
        current = installed_version(conn, schema)
        for migration in migrations:
            if current < migration.version <= target:
                log.info("applying migration %04d_%s to schema %s", migration.version, migration.name, schema)
                conn.execute(migration.sql.replace("{schema}", statements.schema_quoted))
                conn.execute(statements.record_migration, {"version": migration.version, "name": migration.name})
                applied.append(migration.version)
    return applied


def uninstall(conn: psycopg.Connection[Any], schema: str) -> None:
    """Drop queuer's tables from ``schema`` (the schema itself stays)."""
    quoted = quote_identifier(schema)
    with conn.transaction():
        conn.execute(Queries(schema).lock_schema_installers, {"schema": schema})
        for table in TABLES:
            conn.execute(f"DROP TABLE IF EXISTS {quoted}.{table} CASCADE")
        for function in FUNCTIONS:
            conn.execute(f"DROP FUNCTION IF EXISTS {quoted}.{function}")
