"""Schema: numbered migrations, installed exactly once under concurrency; the claim uses its index."""

from __future__ import annotations

import threading
import uuid

import psycopg

from queuer.database.migrations import installed_version, latest_version, migrate
from tests.support import count, sql


def test_ten_concurrent_installers_apply_each_migration_once(db_config):
    schema = db_config.schema + "_m"
    errors = []
    barrier = threading.Barrier(10)

    def install():
        try:
            with psycopg.connect(**db_config.connect_kwargs(), autocommit=True) as conn:
                barrier.wait()
                migrate(conn, schema)
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=install) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert errors == []
        rows = sql(db_config, f'SELECT version, count(*) FROM "{schema}".schema_version GROUP BY version ORDER BY version')
        assert rows == [(v, 1) for v in range(1, latest_version() + 1)]
        with psycopg.connect(**db_config.connect_kwargs(), autocommit=True) as conn:
            assert installed_version(conn, schema) == latest_version()
            assert migrate(conn, schema) == []  # up to date: nothing to do
    finally:
        sql(db_config, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_tables_use_timestamptz_only(make_queuer, db_config):
    make_queuer()
    plain = count(
        db_config,
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = %s "
        "AND data_type = 'timestamp without time zone'",
        (db_config.schema,),
    )
    assert plain == 0


def test_claim_uses_the_partial_index(make_queuer, db_config):
    q = make_queuer()
    sql(db_config, "INSERT INTO {schema}.job (rid, task_name) "
                   "SELECT gen_random_uuid(), 'len' FROM generate_series(1, 20000)")
    # Right after a burst the statistics still say "empty": the plan must hold anyway.
    stale = _explain_claim(q)
    sql(db_config, "ANALYZE {schema}.job")
    fresh = _explain_claim(q)
    for plan in (stale, fresh):
        lines = plan.splitlines()
        lock_rows = next(i for i, line in enumerate(lines) if "LockRows" in line)
        # The rows to lock come straight from the claim index, in its order: no sort of the queue
        # (under at most the one-time check that the worker is still RUNNING).
        below = [line for line in lines[lock_rows + 1:lock_rows + 4]
                 if "Result" not in line and "One-Time Filter" not in line]
        assert "Index Scan using job_claim_idx" in below[0], plan
        assert "Seq Scan" not in plan and "JIT" not in plan, plan


def _explain_claim(q) -> str:
    params = {"worker_rid": uuid.uuid4(), "task_names": ["len"], "limit": 100,
              "default_max_attempts": 1, "default_timeout": None, "default_crash_budget": 5,
              "suspects": False}
    with q.db.connection() as conn:  # the connections the poller claims on
        rows = conn.execute("EXPLAIN " + q.db.queries.claim_jobs, params).fetchall()
    return "\n".join(r["QUERY PLAN"] for r in rows)
