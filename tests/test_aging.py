"""Staying fast over time: a snapshot held open elsewhere must not make every claim slower."""

from __future__ import annotations

import re

import psycopg
import pytest

from queuer import BatchJob, JobStatus, Options
from tests.support import wait_until


def _claim(q, limit: int, after=None):
    return q.attempt_db.claim(q.worker.rid, ["noop"], limit, 1, None, 3, after=after)


def _buffers(q, statement: str, params: dict) -> int:
    """Pages the claim's scans of the claim index read (EXPLAIN (ANALYZE, BUFFERS), rolled back)."""
    from queuer.database.params import HOT_PATH_SETTINGS

    with q.db.connection() as conn:
        with conn.transaction(force_rollback=True):
            for name, value in HOT_PATH_SETTINGS:
                conn.execute(f"SET LOCAL {name} = {value}")
            plan = "\n".join(row["QUERY PLAN"] for row in conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement,
                                                                          params))
    lines = plan.splitlines()
    pages = 0
    for i, line in enumerate(lines):  # the claim index scans' own pages, not the update's
        if "Scan using job_claim_idx" in line and "never executed" not in line:
            buffers = next(later for later in lines[i + 1:] if "Buffers:" in later)
            pages += sum(int(n) for n in re.findall(r"=(\d+)", buffers))
    return pages


@pytest.fixture
def started(make_queuer, db_config):
    q = make_queuer()
    q.add_task_with_name(lambda: None, "noop")
    q.worker_db.set_status(q.worker.rid, __import__("queuer").model.worker.WorkerStatus.RUNNING)
    return q


def test_claims_go_on_from_where_the_last_ended_past_what_a_held_snapshot_keeps(started, db_config):
    q = started
    q.add_jobs([BatchJob(task="noop") for _ in range(3000)])
    with psycopg.connect(**db_config.connect_kwargs()) as holder:
        holder.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        holder.execute("SELECT count(*) FROM pg_class")  # a snapshot, held while jobs are claimed and ended
        last = None
        for _ in range(25):  # 2,500 jobs claimed, their claim-index entries left behind for vacuum
            jobs = _claim(q, 100, after=last)
            assert len(jobs) == 100
            last = jobs[-1].claim_key
        params = dict(task_names="{noop}", suspects=False, worker_rid=q.worker.rid, limit=100,
                      default_crash_budget=3, default_max_attempts=1, default_timeout=None)
        from_start = _buffers(q, q.db.queries.claim_jobs, params)
        go_on = _buffers(q, q.db.queries.claim_jobs_after, {
            **params, "after_priority": last.priority, "after_at": last.scheduled_at, "after_id": last.id})
    # A claim from the start visits every job claimed since the snapshot; going on, a few pages.
    assert from_start >= 40 and go_on <= from_start / 5, (from_start, go_on)
    assert q.attempt_db.claim(q.worker.rid, ["noop"], 1000, 1, None, 3)  # the rest are still there


def test_going_on_keeps_claim_order_higher_priorities_first(started):
    q = started
    q.add_jobs([BatchJob(task="noop") for _ in range(50)])
    first = _claim(q, 10)
    urgent = q.add_job_with_options(Options(priority=5), "noop").rid
    later = q.add_job_with_options(Options(priority=-5), "noop").rid
    after = _claim(q, 5, after=first[-1].claim_key)
    assert after[0].rid == urgent  # a higher priority, added after the cursor was set, comes first
    rest = _claim(q, 100, after=after[-1].claim_key)
    assert rest[-1].rid == later and len(rest) == 37  # the rest of priority 0, then the lower one


def test_a_job_put_back_behind_the_cursor_is_found_by_the_next_full_claim(started):
    q = started
    q.add_jobs([BatchJob(task="noop") for _ in range(30)])
    first = _claim(q, 10)
    q.attempt_db.release(q.worker.rid, [(first[0].id, first[0].attempt)])
    going_on = _claim(q, 10, after=first[-1].claim_key)
    assert first[0].rid not in {j.rid for j in going_on}  # behind the cursor
    assert _claim(q, 1)[0].rid == first[0].rid  # the full claim takes it, first in claim order


def test_a_worker_draining_a_backlog_finds_a_job_behind_its_cursor_within_a_second(make_queuer, db_config):
    """The poller goes on from its cursor, and starts from the start at least once a second: a job
    that lands behind the cursor (a late commit, one put back) runs long before the backlog is done."""
    import time

    from tests.support import count, sql

    q = make_queuer(max_concurrency=2)
    q.add_task_with_name(lambda: time.sleep(0.002), "noop")
    q.add_jobs([BatchJob(task="noop") for _ in range(8000)])
    q.start()
    wait_until(lambda: count(db_config, "SELECT count(*) FROM {schema}.job_archive") >= 300, timeout=60)
    late = q.add_job("noop").rid
    sql(db_config, "UPDATE {schema}.job SET scheduled_at = now() - interval '1 hour' WHERE rid = %s", (late,))
    assert q.wait_for_job_finished(late, timeout_seconds=30).status == JobStatus.SUCCEEDED
    assert count(db_config, "SELECT count(*) FROM {schema}.job") > 1000  # the backlog was far from done


# -- the partitioned archive ------------------------------------------------------------------


def _partitions(db_config) -> list[str]:
    from tests.support import sql

    return [r[0] for r in sql(db_config, "SELECT c.relname FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = "
                                         "i.inhrelid WHERE i.inhparent = to_regclass(%s) ORDER BY 1",
                              (f'"{db_config.schema}".job_archive',))]


def _fill_archive(db_config, days_ago: float, n: int) -> None:
    """``n`` archived jobs that ended ``days_ago`` days ago (their partition made first)."""
    from tests.support import sql

    sql(db_config, "SELECT * FROM {schema}.archive_maintain(86400, 2, NULL, now() - make_interval(days => %s))",
        (int(days_ago) + 1,))
    sql(db_config, "INSERT INTO {schema}.job_archive (id, rid, task_name, status, scheduled_at, created_at, ended_at) "
                   "SELECT -g, gen_random_uuid(), 'old', 'SUCCEEDED', now(), now(), "
                   "now() - make_interval(secs => %s * 86400) FROM generate_series(1, %s) AS g", (days_ago, n))


def test_a_fresh_archive_has_partitions_ahead_and_jobs_land_in_todays(make_queuer, db_config):
    from tests.support import sql

    q = make_queuer()
    q.add_task_with_name(lambda: "done", "work")
    q.start()
    done = q.wait_for_job_finished(q.add_job("work").rid, timeout_seconds=30)
    parts = _partitions(db_config)
    assert "job_archive_default" in parts and len(parts) >= 4  # today, two days ahead, the default
    where = sql(db_config, "SELECT tableoid::regclass::text FROM {schema}.job_archive WHERE rid = %s", (done.rid,))
    today = sql(db_config, "SELECT 'job_archive_p' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD') || '_000000'")[0][0]
    assert where[0][0].endswith(today)
    assert q.get_job_ended(done.rid).result == "done"


@pytest.fixture
def cli_runner(db_config):
    from click.testing import CliRunner

    from queuer.cli import main
    from tests.support import db_env

    return lambda *args: CliRunner().invoke(main, list(args), env=db_env(db_config))


def test_pruning_drops_whole_days_and_deletes_only_the_rest_row_by_row(cli_runner, db_config, make_queuer):
    from tests.support import count

    make_queuer()  # installs the schema
    _fill_archive(db_config, 3.5, 300)
    _fill_archive(db_config, 2.5, 200)
    _fill_archive(db_config, 0.1, 100)
    old_parts = set(_partitions(db_config))
    result = cli_runner("prune", "--older-than", "2d", "--yes")
    assert result.exit_code == 0, result.output
    assert "pruned 500 archived job(s)" in result.output and "whole partition(s) dropped" in result.output
    assert count(db_config, "SELECT count(*) FROM {schema}.job_archive") == 100
    gone = old_parts - set(_partitions(db_config))
    assert len(gone) >= 2  # the days that ended before the cutoff: dropped, not deleted from


def test_the_master_drops_partitions_past_the_retention(make_queuer, db_config):
    from queuer import WorkerSettings
    from tests.support import FAST, count

    settings = WorkerSettings(**{**FAST.__dict__, "archive_retention": 2 * 86400.0})
    q = make_queuer(settings=settings)
    _fill_archive(db_config, 5.5, 50)
    before = set(_partitions(db_config))
    q.start()
    wait_until(lambda: count(db_config, "SELECT count(*) FROM {schema}.job_archive") == 0, timeout=30,
               message="the master prunes the old day")
    assert before - set(_partitions(db_config))  # by dropping its partition


def test_a_job_that_ends_outside_every_partition_lands_in_the_default_one(make_queuer, db_config):
    import uuid

    from tests.support import sql

    q = make_queuer()
    for name in [p for p in _partitions(db_config) if p != "job_archive_default"]:
        sql(db_config, f"DROP TABLE {{schema}}.{name}")
    sql(db_config, "DELETE FROM {schema}.archive_partition")
    rid = uuid.uuid4()  # archived while no partition covers now (no master ran for days, say)
    sql(db_config, "INSERT INTO {schema}.job_archive (id, rid, task_name, status, scheduled_at, created_at) "
                   "VALUES (1, %s, 'work', 'SUCCEEDED', now(), now())", (rid,))
    where = sql(db_config, "SELECT tableoid::regclass::text FROM {schema}.job_archive WHERE rid = %s", (rid,))
    assert where[0][0].endswith("job_archive_default")
    assert q.get_job_ended(rid).task_name == "work"
    # Today's rows are in the default partition: today's partition cannot be made, later ones can.
    assert sql(db_config, "SELECT created FROM {schema}.archive_maintain(86400, 2)")[0][0] == 2
    assert sql(db_config, "SELECT count(*) FROM {schema}.job_archive_default")[0][0] == 1


def test_an_existing_archive_becomes_a_partition_without_moving_a_row(db_config):
    import psycopg as pg

    from queuer import new_queuer_with_db
    from queuer.database.migrations import migrate
    from tests.support import sql

    with pg.connect(**db_config.connect_kwargs(), autocommit=True) as conn:
        migrate(conn, db_config.schema, target=7)
    sql(db_config, "INSERT INTO {schema}.job_archive (id, rid, task_name, status, scheduled_at, created_at, ended_at) "
                   "SELECT -g, gen_random_uuid(), 'old', 'SUCCEEDED', now(), now(), now() - make_interval(secs => g) "
                   "FROM generate_series(1, 500) AS g")
    old_rid = sql(db_config, "SELECT rid FROM {schema}.job_archive LIMIT 1")[0][0]
    q = new_queuer_with_db("upgraded", 2, None, db_config)  # migrates to the partitioned archive
    try:
        assert "job_archive_legacy" in _partitions(db_config)
        assert q.get_job_ended(old_rid).task_name == "old"
        q.add_task_with_name(lambda: 1, "work")
        q.start()
        assert q.wait_for_job_finished(q.add_job("work").rid, timeout_seconds=30).result == 1
        assert sql(db_config, "SELECT count(*) FROM {schema}.job_archive")[0][0] == 501
    finally:
        q.stop()


def test_rids_are_time_ordered_so_the_rid_indexes_grow_at_one_end(make_queuer):
    import time

    q = make_queuer()
    q.add_task_with_name(lambda: None, "noop")
    rids = []
    for _ in range(5):
        rids.append(q.add_job("noop").rid)
        time.sleep(0.002)  # a rid orders by the millisecond it was made
    rids += q.add_jobs([BatchJob(task="noop") for _ in range(3)])
    assert all(rid.version == 7 for rid in rids)
    assert rids[:5] == sorted(rids[:5]) and max(rids[:5]) < min(rids[5:])
