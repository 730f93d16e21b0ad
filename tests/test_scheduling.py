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


def test_cron_schedules_fire_each_tick_once_and_can_be_managed(make_queuer, db_config):
    q = make_queuer()

    @q.schedule("every-second", "* * * * * *")
    def heartbeat_job():
        return "tick"

    q.add_task(tick)
    q.add_schedule("with-args", "* * * * * */2", tick, 7, timezone="Europe/Berlin")
    names = [s.name for s in q.get_schedules()]
    assert names == ["every-second", "with-args"]
    q.start()
    wait_until(lambda: count(db_config, "SELECT count(*) FROM {schema}.job_archive "
                                       "WHERE task_name = 'every-second'") >= 3, timeout=15, message="3 ticks")
    assert q.pause_schedule("every-second").paused
    paused_at = count(db_config, "SELECT count(*) FROM {schema}.job_archive WHERE task_name = 'every-second'")
    assert not q.resume_schedule("every-second").paused
    q.remove_schedule("with-args")
    assert [s.name for s in q.get_schedules()] == ["every-second"]
    with pytest.raises(LookupError):
        q.pause_schedule("nope")
    assert paused_at >= 3
    with_args = sql(db_config, "SELECT parameters FROM {schema}.job_archive WHERE task_name = 'tick'")
    assert all(row[0] == [7] for row in with_args)
    fired = q.get_jobs_ended(task_name="every-second")
    assert fired and all(job.options.extra == {"schedule": "every-second"} for job in fired)


def test_bad_cron_and_time_zone_fail_at_once(make_queuer, db_config):
    q = make_queuer()
    q.add_task(tick)
    for bad in ("* * *", "61 * * * *", "*/5 * * * * * * *", "'; DROP TABLE job; --", "*\n* * * *"):
        with pytest.raises(ValueError, match="invalid cron expression"):
            q.add_schedule("bad", bad, tick)
    with pytest.raises(ValueError, match="unknown time zone"):
        q.add_schedule("bad", "* * * * *", tick, timezone="Mars/Olympus")
    assert q.get_schedules() == []


@pytest.mark.load
def test_cron_tick_fires_exactly_once_with_3_worker_processes(make_queuer, db_config):
    from tests.support import start_worker_process, stop_process

    producer = make_queuer()
    workers = [start_worker_process(db_config, "--concurrency", "2", QUEUER_TEST_CRON="1") for _ in range(3)]
    try:
        wait_until(lambda: len(producer.get_workers(status="RUNNING")) == 3, timeout=60, message="3 workers")
        wait_until(lambda: count(db_config, "SELECT count(*) FROM {schema}.job_archive "
                                           "WHERE task_name = 'every-second'") >= 5,
                   timeout=30, message="5 ticks")
    finally:
        for w in workers:
            stop_process(w)
    ticks = [r[0] for r in sql(db_config, "SELECT scheduled_at FROM {schema}.job_archive "
                                         "WHERE task_name = 'every-second' ORDER BY scheduled_at")]
    ticks += [r[0] for r in sql(db_config, "SELECT scheduled_at FROM {schema}.job "
                                          "WHERE task_name = 'every-second'")]
    assert len(ticks) == len(set(ticks)), "a tick fired twice"
    gaps = {(b - a).total_seconds() for a, b in zip(sorted(ticks), sorted(ticks)[1:])}
    assert gaps == {1.0}, gaps  # every second, none skipped while workers ran


def test_a_tick_missed_while_no_worker_ran_fires_once(make_queuer, db_config):
    q = make_queuer()
    q.add_task(tick)
    q.add_schedule("minutely", "* * * * *", tick, 1)
    # As if every worker had been down for ten minutes.
    sql(db_config, "UPDATE {schema}.schedule SET next_run_at = now() - interval '10 minutes'")
    q.start()
    wait_until(lambda: count(db_config, "SELECT count(*) FROM {schema}.job_archive") >= 1, message="catch-up run")
    [schedule] = q.get_schedules()
    assert schedule.next_run_at > schedule.last_run_at  # moved past now, not to the next missed minute
    # Ten missed ticks, one run: the one that fired for the stale next_run_at.
    missed = ("SELECT count(*) FROM {schema}.{table} WHERE scheduled_at < now() - interval '5 minutes'")
    assert count(db_config, missed.replace("{table}", "job_archive")) == 1
    assert count(db_config, missed.replace("{table}", "job")) == 0
