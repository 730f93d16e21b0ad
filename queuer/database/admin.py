"""Schema administration for the ``queuer`` command: verify, durability, autovacuum, retention."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from uuid import UUID

import psycopg
from psycopg.rows import tuple_row

from queuer.config.database import quote_identifier
from queuer.database.statements import Queries

if TYPE_CHECKING:
    from queuer.payload.encryption import Keyring

TABLES = ("job", "job_archive", "archive_partition", "worker", "master", "task_rate", "task_control", "group_rate",
          "schedule", "web_state", "web_session_revoked", "web_audit", "schema_version")
# With their argument types, as DROP FUNCTION and GRANT EXECUTE name them.
FUNCTIONS = ("archive_maintain(double precision, integer, double precision, timestamptz)", "settle_dependents()")
INDEXES = (
    "job_claim_idx",
    "job_scheduled_idx",
    "job_running_worker_idx",
    "job_unique_key_idx",
    "job_running_task_idx",
    "job_running_serial_key_idx",
    "job_archive_rid_idx",
    "job_archive_ended_at_idx",
    "schedule_due_idx",
    "job_workflow_idx",
    "job_archive_workflow_idx",
    "job_archive_unique_key_idx",
    "job_group_claim_idx",
)

# Which tables stay logged (crash-safe) at each level, as pgqueuer defines them:
# balanced keeps the queue and the schedules durable, the archive is disposable.
DURABILITY_LOGGED = {
    "durable": set(TABLES),
    "balanced": set(TABLES) - {"job_archive"},
    "volatile": {"schema_version"},
}

# Queue tables churn: vacuum and analyze them far more often than the defaults.
AUTOVACUUM_SETTINGS = {
    "job": {
        "autovacuum_vacuum_scale_factor": "0.01",
        "autovacuum_vacuum_threshold": "1000",
        "autovacuum_analyze_scale_factor": "0.02",
        "autovacuum_analyze_threshold": "1000",
        "autovacuum_vacuum_cost_delay": "0",
    },
    "job_archive": {
        "autovacuum_vacuum_scale_factor": "0.05",
        "autovacuum_analyze_scale_factor": "0.05",
    },
    "worker": {"autovacuum_vacuum_scale_factor": "0.05"},
}


def verify(conn: psycopg.Connection[Any], schema: str, expect_present: bool) -> list[str]:
    """One message per object that is missing (or present, with ``expect_present=False``)."""
    statements = Queries(schema)
    cur = conn.cursor(row_factory=tuple_row)
    problems = []
    for kind, names in (("table", TABLES), ("index", INDEXES)):
        for name in names:
            row = cur.execute(statements.relation_exists, {"name": f"{quote_identifier(schema)}.{name}"}).fetchone()
            present = bool(row and row[0])
            if present != expect_present:
                state = "missing" if expect_present else "unexpected"
                problems.append(f"{state} {kind}: {schema}.{name}")
    return problems


def durability_statements(conn: psycopg.Connection[Any], schema: str, level: str) -> list[str]:
    """The ALTER TABLE statements that bring every table to ``level`` (none for those already there)."""
    if level not in DURABILITY_LOGGED:
        raise ValueError(f"unknown durability {level!r}: use volatile, balanced or durable")
    quoted = quote_identifier(schema)
    cur = conn.cursor(row_factory=tuple_row)
    relation_persistence = Queries(schema).relation_persistence
    statements = []
    for table in TABLES:
        want_logged = table in DURABILITY_LOGGED[level]
        for physical in _with_storage(conn, schema, table):
            row = cur.execute(relation_persistence, {"name": f"{quoted}.{physical}"}).fetchone()
            if row is None:
                continue
            if (row[0] == "p") != want_logged:
                statements.append(f"ALTER TABLE {quoted}.{physical} SET {'LOGGED' if want_logged else 'UNLOGGED'}")
    return statements


def _with_storage(conn: psycopg.Connection[Any] | None, schema: str, table: str) -> list[str]:
    """The tables that hold ``table``'s rows: its partitions for the partitioned archive (new
    partitions copy the newest one's persistence and storage settings), else itself."""
    if table != "job_archive" or conn is None:
        return [table]
    row = conn.cursor(row_factory=tuple_row).execute(
        Queries(schema).relation_exists, {"name": f"{quote_identifier(schema)}.archive_partition"}).fetchone()
    return archive_partitions(conn, schema) if row and row[0] else [table]


def autovacuum_statements(schema: str, rollback: bool, conn: psycopg.Connection[Any] | None = None) -> list[str]:
    """The statements; with ``conn``, the archive's settings go to each of its partitions."""
    quoted = quote_identifier(schema)
    statements = []
    for table, settings in AUTOVACUUM_SETTINGS.items():
        for physical in _with_storage(conn, schema, table):
            if rollback:
                statements.append(f"ALTER TABLE {quoted}.{physical} RESET ({', '.join(settings)})")
            else:
                pairs = ", ".join(f"{k} = {v}" for k, v in settings.items())
                statements.append(f"ALTER TABLE {quoted}.{physical} SET ({pairs})")
    return statements


def grant_statements(schema: str, role: str) -> list[str]:
    """What a role needs to produce and consume jobs, and nothing more: no DDL, no ownership."""
    from queuer.config.database import validate_schema_name

    quoted = quote_identifier(schema)
    validate_schema_name(role)  # a role name is an identifier too: same rules, same quoting
    who = f'"{role}"'
    tables = ", ".join(f"{quoted}.{t}" for t in TABLES if t != "schema_version")
    return [
        f"GRANT USAGE ON SCHEMA {quoted} TO {who}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON {tables} TO {who}",
        f"GRANT SELECT ON {quoted}.schema_version TO {who}",
        f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA {quoted} TO {who}",
        # Partitions are made and dropped by their owner's function, run by the master.
        *(f"GRANT EXECUTE ON FUNCTION {quoted}.{function} TO {who}" for function in FUNCTIONS),
    ]


def apply(conn: psycopg.Connection[Any], statements: list[str]) -> None:
    with conn.transaction():
        for statement in statements:
            conn.execute(statement)


ARCHIVE_PARTITIONS_AHEAD = 2
"""Archive partitions kept ready beyond the current one."""


def maintain_archive(conn: psycopg.Connection[Any], schema: str, partition_seconds: float,
                     keep_seconds: float | None = None, since: Any = None) -> tuple[int, int]:
    """Create archive partitions ahead (from ``since``, default now), drop those older than
    ``keep_seconds``; return (created, dropped). One DDL statement per partition, no row deleted."""
    row = conn.cursor(row_factory=tuple_row).execute(Queries(schema).maintain_archive, {
        "partition_seconds": partition_seconds, "ahead": ARCHIVE_PARTITIONS_AHEAD, "keep_seconds": keep_seconds,
        "since": since}).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def archive_partitions(conn: psycopg.Connection[Any], schema: str) -> list[str]:
    """The archive's partitions (the DEFAULT one included), oldest first."""
    rows = conn.cursor(row_factory=tuple_row).execute(Queries(schema).archive_partition_names).fetchall()
    return [r[0] for r in rows] + ["job_archive_default"]


def count_archive(conn: psycopg.Connection[Any], schema: str, older_than_seconds: float) -> tuple[int, int]:
    """(archived jobs that ended longer ago than this, all archived jobs)."""
    row = conn.cursor(row_factory=tuple_row).execute(
        Queries(schema).count_archive, {"older_than": older_than_seconds}).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def prune_archive(
    conn: psycopg.Connection[Any],
    schema: str,
    older_than_seconds: float,
    batch_size: int = 5000,
    progress: Callable[[int], None] | None = None,
    once: bool = False,
) -> int:
    """Delete archived jobs that ended longer ago than this, row by row in small batches (short locks).

    What whole partitions hold is dropped first (``maintain_archive``); this
    deletes the rest: the part of a partition that straddles the cutoff, and
    rows that went to the DEFAULT partition. ``once``: a single batch (the
    master's retention does one per tick).
    """
    prune_batch = Queries(schema).prune_archive_batch
    total = 0
    cur = conn.cursor(row_factory=tuple_row)
    while True:
        deleted = cur.execute(prune_batch, {"older_than": older_than_seconds, "batch_size": batch_size}).rowcount
        total += deleted
        if progress is not None:
            progress(total)
        if deleted < batch_size or once:
            return total


def reencrypt(
    conn: psycopg.Connection[Any],
    schema: str,
    keyring: Keyring,
    batch_size: int = 500,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Re-encrypt every payload not under the newest key (after a rotation); return how many rows changed.

    Each row is updated only if its blob is still the one that was read, so a
    worker writing at the same time is never overwritten.
    """
    statements = Queries(schema)
    changed = 0
    cur = conn.cursor(row_factory=tuple_row)
    for read, write in ((statements.reencrypt_read_job, statements.reencrypt_write_job),
                        (statements.reencrypt_read_job_archive, statements.reencrypt_write_job_archive)):
        after = -(2**63)
        while True:
            rows = cur.execute(read, {"after": after, "current_key": keyring.current_id,
                                      "batch_size": batch_size}).fetchall()
            if not rows:
                break
            with conn.transaction():
                for id_, rid, origin_rid, arguments, results in rows:
                    cur.execute(write, {
                        "id": id_,
                        "old_arguments": arguments, "new_arguments": _rotated(keyring, arguments, origin_rid or rid,
                                                                              "arguments"),
                        "old_results": results, "new_results": _rotated(keyring, results, rid, "results"),
                    })
                    changed += 1
            after = rows[-1][0]
            if progress is not None:
                progress(changed)
    return changed


def _rotated(keyring: Keyring, blob: bytes | None, binding: UUID, what: str) -> bytes | None:
    """The blob sealed under the newest key (itself when it already is, or None)."""
    if blob is None or not keyring.needs_rotation(blob):
        return blob
    return keyring.encrypt(keyring.decrypt(blob, binding, what), binding, what)
