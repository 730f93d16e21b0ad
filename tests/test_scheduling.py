"""Recurring jobs: fixed intervals without drift, max_count, next-interval functions."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from queuer import JobStatus, Options, Schedule
from tests.support import count, sql, wait_until


def tick(n):
    return n


def archived_runs(db_config):
    rows = sql(db_config, "SELECT schedule_count, scheduled_at, started_at, origin_rid, status "
                          "FROM {schema}.job_archive ORDER BY schedule_count")
    return rows


def test_interval_spacing_holds_over_5_runs_and_max_count_stops_them(make_queuer, db_config):
    q = make_queuer()
    q.add_task(tick)
    q.start()
    start = datetime.now(timezone.utc) + timedelta(seconds=0.5)
    first = q.add_job_with_options(
        Options(schedule=Schedule(start=start, max_count=5, interval=timedelta(seconds=0.5))), tick, 1)
    wait_until(lambda: count(db_config, "SELECT count(*) FROM {schema}.job_archive") == 5,
               timeout=20, message="5 runs")
    runs = archived_runs(db_config)
    assert [r[0] for r in runs] == [0, 1, 2, 3, 4]
    for n, (_, scheduled_at, started_at, origin, status) in enumerate(runs):
        assert status == "SUCCEEDED"
        assert scheduled_at == start + n * timedelta(seconds=0.5)  # anchored: no drift
        assert started_at >= scheduled_at
        assert origin == (None if n == 0 else first.rid)  # every run links to the first
    # max_count=5: exactly five runs, nothing left queued.
    assert count(db_config, "SELECT count(*) FROM {schema}.job") == 0


def test_max_count_0_repeats_until_cancelled(make_queuer, db_config):
    q = make_queuer()
    q.add_task(tick)
    q.start()
    q.add_job_with_options(Options(schedule=Schedule(max_count=0, interval=timedelta(seconds=0.3))), tick, 0)
    wait_until(lambda: count(db_config, "SELECT count(*) FROM {schema}.job_archive") >= 4,
               timeout=20, message="4 runs of a forever schedule")
    pending = wait_until(lambda: q.get_jobs(status="SCHEDULED"), message="the next run")
    # One run of a series exists at a time: cancelling it ends the series.
    assert q.cancel_job(pending[0].rid).status == JobStatus.CANCELLED
    assert q.get_jobs() == []
    assert count(db_config, "SELECT count(*) FROM {schema}.job_archive WHERE status = 'SUCCEEDED'") >= 4


def test_a_slow_run_skips_missed_slots_instead_of_bursting(make_queuer, db_config):
    import time

    def slow(n):
        time.sleep(0.7)  # longer than two intervals
        return n

    q = make_queuer()
    q.add_task(slow)
    q.start()
    start = datetime.now(timezone.utc) + timedelta(seconds=0.2)
    q.add_job_with_options(Options(schedule=Schedule(start=start, max_count=3, interval=timedelta(seconds=0.3))),
                           slow, 1)
    wait_until(lambda: count(db_config, "SELECT count(*) FROM {schema}.job_archive") == 3,
               timeout=20, message="3 runs")
    runs = archived_runs(db_config)
    slots = [round((r[1] - start).total_seconds() / 0.3, 6) for r in runs]
    assert slots[0] == 0 and all(s == int(s) for s in slots)  # always on the grid
    assert slots[1] >= 3 and slots[2] >= slots[1] + 3  # missed slots skipped, not replayed


def test_next_interval_function_drives_the_times(make_queuer, db_config):
    def doubling(start: datetime, count: int) -> datetime:
        return start + timedelta(seconds=0.2 * (2 ** count - 1))

    q = make_queuer()
    q.add_task(tick)
    q.add_next_interval_func(doubling)
    q.start()
    start = datetime.now(timezone.utc) + timedelta(seconds=0.3)
    q.add_job_with_options(Options(schedule=Schedule(start=start, max_count=4, next_interval="doubling")), tick, 1)
    wait_until(lambda: count(db_config, "SELECT count(*) FROM {schema}.job_archive") == 4,
               timeout=20, message="4 runs")
    offsets = [round((r[1] - start).total_seconds(), 3) for r in archived_runs(db_config)]
    assert offsets == [0.0, 0.2, 0.6, 1.4]


def test_bad_schedules_fail_at_once():
    with pytest.raises(ValueError, match="needs interval or next_interval"):
        Schedule(max_count=0)
    with pytest.raises(ValueError, match="either interval or next_interval"):
        Schedule(max_count=2, interval=timedelta(seconds=1), next_interval="f")
    with pytest.raises(ValueError, match="interval must be positive"):
        Schedule(max_count=2, interval=timedelta(0))
    with pytest.raises(ValueError, match="max_count must be an integer >= 0"):
        Schedule(max_count=-1)
