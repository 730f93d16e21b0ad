"""Staying fast over time: a snapshot held open elsewhere must not make every claim slower."""

from __future__ import annotations

import re

import psycopg
import pytest

from queuer import BatchJob, JobStatus, Options
from tests.support import wait_until


def _claim(q, limit: int, after=None):
    return q.job_db.claim(q.worker.rid, ["noop"], limit, 1, None, 3, after=after)


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
            buffers = next(l for l in lines[i + 1:] if "Buffers:" in l)
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
    assert q.job_db.claim(q.worker.rid, ["noop"], 1000, 1, None, 3)  # the rest are still there


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
    q.job_db.release(q.worker.rid, [(first[0].id, first[0].attempt)])
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
