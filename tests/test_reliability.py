"""Never lose a job: fencing, timeouts, cancellation, shutdown, crashes, database faults.

Run alone with ``python -m pytest -m reliability``.
"""

from __future__ import annotations

import random
import signal
import threading
import time

import psycopg
import pytest

import queuer
from queuer import BatchJob, JobStatus, OnError, Options, WorkerSettings, WorkerStatus
from tests.servers import restart
from tests.support import count, read_lines_until, sql, start_worker_process, stop_process, wait_until

pytestmark = pytest.mark.reliability


def archived(db_config) -> int:
    return count(db_config, "SELECT count(*) FROM {schema}.job_archive")


def test_fencing_a_runner_declared_dead_cannot_change_the_outcome(make_queuer, db_config):
    release_first = threading.Event()
    first_returned = threading.Event()

    def slow_first():
        release_first.wait(20)
        first_returned.set()
        return "from the stale runner"

    def fast_second():
        return "from the rescuer"

    settings = WorkerSettings(poll_interval=0.5, heartbeat_interval=0.25, dead_after=60, master_lease=60, prefetch=0)
    stale = make_queuer(OnError(max_retries=2, retry_delay=0, timeout=None), max_concurrency=1, settings=settings)
    stale.add_task_with_name(slow_first, "work")
    stale.start()
    job = stale.add_job("work")
    wait_until(lambda: stale.get_job(job.rid).status == JobStatus.RUNNING, message="first attempt running")

    # The master declares the stale worker dead and re-queues its job.
    sql(db_config, "UPDATE {schema}.worker SET status = 'DEAD' WHERE rid = %s", (stale.worker.rid,))
    assert stale.attempt_db.rescue_orphans() == (1, 0)
    rescuer = make_queuer(max_concurrency=1, settings=settings)
    rescuer.add_task_with_name(fast_second, "work")
    rescuer.start()
    done = rescuer.wait_for_job_finished(job.rid, 10)
    assert (done.status, done.result, done.attempts) == (JobStatus.SUCCEEDED, "from the rescuer", 2)

    release_first.set()  # the stale runner finishes now and tries to complete
    assert first_returned.wait(10)
    # Its outcome is dropped locally (the heartbeat learnt it was declared dead)
    # or fenced out by the database; either way nothing may change.
    wait_until(lambda: stale._runtime.dispatcher.busy() == 0, message="stale runner returned")
    wait_until(lambda: stale._runtime.completer.pending() == 0, message="stale outcome flushed")
    final = rescuer.get_job_ended(job.rid)
    assert (final.result, final.attempts, final.worker_rid) == ("from the rescuer", 2, rescuer.worker.rid)
    assert archived(db_config) == 1


def test_timeout_fails_the_attempt_sets_the_flag_and_discards_the_late_result(make_queuer, db_config):
    saw_cancel = threading.Event()
    returned = threading.Event()

    def overrun():
        ctx = queuer.current_job()
        if ctx.wait_cancelled(10):
            saw_cancel.set()
        time.sleep(0.2)  # keep running a little after the timeout, as real code would
        returned.set()
        return "too late"

    q = make_queuer()
    q.add_task(overrun)
    q.start()
    job = q.add_job_with_options(Options(on_error=OnError(timeout=0.3, max_retries=0)), overrun)
    done = q.wait_for_job_finished(job.rid, 10)
    assert done.status == JobStatus.FAILED and "TimeoutError" in done.error and done.result is None
    assert saw_cancel.wait(5) and returned.wait(5)
    wait_until(lambda: q._runtime.dispatcher.busy() == 0, message="runaway thread returned")
    assert q.get_job_ended(job.rid).result is None


def test_timeout_is_retried_when_retries_are_left(make_queuer):
    def slow_then_fast():
        if queuer.current_job().attempt == 1:
            queuer.current_job().wait_cancelled(5)
            return "first"
        return "second"

    q = make_queuer()
    q.add_task(slow_then_fast)
    q.start()
    job = q.add_job_with_options(Options(on_error=OnError(timeout=0.3, max_retries=1, retry_delay=0)), slow_then_fast)
    done = q.wait_for_job_finished(job.rid, 10)
    assert (done.status, done.result, done.attempts) == (JobStatus.SUCCEEDED, "second", 2)


def test_cancel_a_running_job_reaches_the_task_and_discards_its_result(make_queuer):
    started = threading.Event()
    saw_cancel = threading.Event()

    def long_running():
        started.set()
        if queuer.current_job().wait_cancelled(10):
            saw_cancel.set()
        return "finished anyway"

    q = make_queuer()
    q.add_task(long_running)
    q.start()
    job = q.add_job(long_running)
    assert started.wait(10)
    cancelled = q.cancel_job(job.rid)
    assert cancelled.status == JobStatus.CANCELLED
    assert saw_cancel.wait(5), "the task's cancellation flag was not set"
    wait_until(lambda: q._runtime.dispatcher.busy() == 0, message="task returned")
    q._runtime.completer.drain(5)
    final = q.get_job_ended(job.rid)
    assert final.status == JobStatus.CANCELLED and final.result is None


def test_a_cancel_heard_before_its_claim_reached_the_worker_still_keeps_the_job_from_running(make_queuer):
    ran = threading.Event()

    def long_running():
        ran.set()
        queuer.current_job().wait_cancelled(30)

    q = make_queuer()
    q.add_task(long_running)
    producer = make_queuer(name="producer")
    q.start()
    poller = q._runtime.poller
    take = poller._take

    def cancelled_on_the_way(jobs, isolated=False):
        for job in jobs:  # cancelled between the claim's commit and the buffer: the worker hears it first
            producer.cancel_job(job.rid)
            wait_until(lambda: job.rid in q._runtime.dispatcher._cancelled_early, message="the cancel heard")
        return take(jobs, isolated)

    poller._take = cancelled_on_the_way
    job = q.add_job(long_running)
    assert q.wait_for_job_finished(job.rid, 10).status == JobStatus.CANCELLED
    wait_until(lambda: q._runtime.counters().claimed >= 1 and not q._runtime.dispatcher.held(), message="the claim dropped")
    assert not ran.is_set() and q._runtime.dispatcher.started_total == 0


def test_stop_worker_from_another_process_stops_it(make_queuer):
    worker = make_queuer()
    worker.add_task(len)
    worker.start()
    other = make_queuer()
    assert other.stop_worker_gracefully(worker.worker.rid)
    assert worker.wait_until_stopped(10)
    assert other.get_worker(worker.worker.rid).status == WorkerStatus.STOPPED


def test_sigterm_finishes_running_jobs_and_releases_prefetched_ones_at_once(make_queuer, db_config):
    producer = make_queuer()
    proc = start_worker_process(db_config, "--concurrency", "2", QUEUER_PREFETCH="4", QUEUER_TEST_ANNOUNCE="1")
    try:
        read_lines_until(proc, lambda lines: any(line.startswith("READY") for line in lines))
        running = [producer.add_job("sleepy", i, seconds=1.5).rid for i in range(2)]
        read_lines_until(proc, lambda lines: sum(line.count("STARTED") for line in lines) == 2)
        prefetched = producer.add_jobs([BatchJob(task="sleepy", parameters=[i], parameters_keyed={"seconds": 1.5})
                                        for i in range(4)])
        wait_until(lambda: len(producer.get_jobs(status="RUNNING")) == 6, message="4 prefetched")
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        wait_until(
            lambda: len(producer.get_jobs(status="QUEUED")) == 4, timeout=5, interval=0.01, message="released"
        )
        assert time.monotonic() - sent < 1.0
        assert proc.wait(30) == 0
    finally:
        stop_process(proc)
    for rid in running:
        done = producer.get_job_ended(rid)
        assert done.status == JobStatus.SUCCEEDED and done.attempts == 1
    for rid in prefetched:
        job = producer.get_job(rid)
        assert job.status == JobStatus.QUEUED and job.attempts == 0 and job.worker_rid is None


@pytest.mark.crash
@pytest.mark.load
def test_kill_9_repeatedly_loses_no_job(make_queuer, db_config):
    total = 20_000
    producer = make_queuer()
    producer.add_jobs([BatchJob(task="sleepy", parameters=[i], parameters_keyed={"seconds": 0.004})
                       for i in range(total)])
    workers = [start_worker_process(db_config, "--concurrency", "4") for _ in range(3)]
    kills = 0
    try:
        rng = random.Random(7)
        while kills < 6 and archived(db_config) < total * 0.9:
            wait_until(lambda: len(producer.get_workers(status="RUNNING")) >= 3, timeout=60, message="3 workers")
            wait_until(lambda: count(db_config, "SELECT count(*) FROM {schema}.job WHERE status = 'RUNNING'") > 0,
                       message="jobs in flight")
            victim = rng.randrange(len(workers))
            workers[victim].kill()  # SIGKILL: no cleanup at all
            workers[victim].wait()
            kills += 1
            workers[victim] = start_worker_process(db_config, "--concurrency", "4")
        wait_until(lambda: archived(db_config) >= total, timeout=240, interval=0.25, message="all archived")
    finally:
        for w in workers:
            stop_process(w)
    assert kills >= 5
    assert count(db_config, "SELECT count(*) FROM {schema}.job") == 0
    assert count(db_config, "SELECT count(DISTINCT rid) FROM {schema}.job_archive") == total
    assert count(db_config, "SELECT count(*) FROM {schema}.job_archive WHERE status = 'SUCCEEDED'") == total
    assert count(db_config, "SELECT count(*) FROM {schema}.job_archive WHERE attempts > 1") > 0


@pytest.mark.load
def test_100k_noop_jobs_over_4_processes_archived_exactly_once(make_queuer, db_config):
    total = 100_000
    producer = make_queuer()
    for start in range(0, total, 20_000):
        producer.add_jobs([BatchJob(task="noop", parameters=[i]) for i in range(start, start + 20_000)])
    workers = [start_worker_process(db_config, "--concurrency", "8", "--drain") for _ in range(4)]
    try:
        codes = [w.wait(600) for w in workers]
    finally:
        for w in workers:
            stop_process(w)
    assert codes == [0, 0, 0, 0]
    assert count(db_config, "SELECT count(*) FROM {schema}.job") == 0
    assert count(db_config, "SELECT count(DISTINCT rid) FROM {schema}.job_archive WHERE status = 'SUCCEEDED'") == total
    assert archived(db_config) == total


@pytest.mark.crash
def test_database_restart_and_terminated_backends_are_survived(make_queuer, db_config, pg_server):
    if pg_server is None:
        pytest.skip("the PostgreSQL server is not ours to restart")
    total = 3000
    q = make_queuer(max_concurrency=4)

    def short(i):
        time.sleep(0.002)
        return i

    q.add_task(short)
    q.start()
    q.add_jobs([BatchJob(task=short, parameters=[i]) for i in range(total)])
    wait_until(lambda: archived(db_config) > 300, message="some progress")
    restart(pg_server)
    wait_until(lambda: archived(db_config) > 1500, timeout=60, message="progress after restart")
    terminated = sql(
        db_config,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE pid <> pg_backend_pid() AND datname = current_database() AND backend_type = 'client backend'",
    )[0][0]
    assert terminated >= 2  # the pool's connections and the LISTEN connection
    wait_until(lambda: archived(db_config) >= total, timeout=90, interval=0.2, message="all archived")
    assert count(db_config, "SELECT count(*) FROM {schema}.job") == 0
    assert count(db_config, "SELECT count(DISTINCT rid) FROM {schema}.job_archive") == total
    # LISTEN came back too: a new job is picked up and waited for by NOTIFY.
    job = q.add_job(short, -1)
    assert q.wait_for_job_finished(job.rid, 10).result == -1


def test_a_failing_flush_is_retried_and_loses_nothing(make_queuer, monkeypatch):
    q = make_queuer()
    q.add_task(len)
    real = q.attempt_db.record_outcomes
    failures = []

    def flaky_record(worker_rid, outcomes):
        if not failures:
            failures.append(len(outcomes))
            raise psycopg.OperationalError("injected: connection lost during flush")
        return real(worker_rid, outcomes)

    monkeypatch.setattr(q.attempt_db, "record_outcomes", flaky_record)
    q.start()
    done = q.wait_for_job_finished(q.add_job(len, "abc").rid, 10)
    assert failures == [1] and (done.status, done.result) == (JobStatus.SUCCEEDED, 3)
    assert q._runtime.completer.alive


def test_a_dead_background_loop_is_restarted(make_queuer):
    q = make_queuer()
    q.add_task(len)
    q.start()
    poller = q._runtime.poller
    poller._stopping.set()  # make the poller thread end as if it had died
    poller.wake()
    wait_until(lambda: not poller.alive, message="poller thread ended")
    poller._stopping.clear()
    wait_until(lambda: poller.alive, timeout=5, message="poller restarted by the heartbeat")
    assert q.wait_for_job_finished(q.add_job(len, "ab").rid, 10).result == 2


def test_stop_worker_now_releases_its_jobs(make_queuer):
    settings = WorkerSettings(poll_interval=0.5, heartbeat_interval=0.25, dead_after=2.0, master_lease=1.0, prefetch=0)
    worker = make_queuer(OnError(max_retries=1, retry_delay=0, timeout=None), settings=settings)
    release = threading.Event()

    def block():
        release.wait(10)

    worker.add_task(block)
    worker.start()
    job = worker.add_job(block)
    wait_until(lambda: worker.get_job(job.rid).status == JobStatus.RUNNING, message="running")
    other = make_queuer()
    assert other.stop_worker(worker.worker.rid)
    assert worker.wait_until_stopped(10)  # did not wait for the running job
    release.set()
    # The abandoned attempt is re-queued by the master of another worker.
    rescuer = make_queuer()
    rescuer.add_task_with_name(lambda: "again", "block")
    rescuer.start()
    done = rescuer.wait_for_job_finished(job.rid, 15)
    assert (done.status, done.result, done.attempts) == (JobStatus.SUCCEEDED, "again", 2)


def test_master_prunes_the_archive_by_retention_in_batches(make_queuer, db_config):
    settings = WorkerSettings(poll_interval=0.5, heartbeat_interval=0.25, dead_after=2.0, master_lease=1.0,
                              archive_retention=3600.0)
    q = make_queuer(settings=settings)
    sql(db_config, "INSERT INTO {schema}.job_archive (id, rid, task_name, status, scheduled_at, created_at, ended_at) "
                   "SELECT -g, gen_random_uuid(), 'old', 'SUCCEEDED', now(), now(), now() - interval '2 hours' "
                   "FROM generate_series(1, 2500) AS g")
    q.add_task(len)
    q.start()
    fresh = q.wait_for_job_finished(q.add_job(len, "abc").rid, 10)
    wait_until(lambda: count(db_config, "SELECT count(*) FROM {schema}.job_archive") == 1, timeout=20,
               message="old rows pruned")
    assert q.get_job_ended(fresh.rid).result == 3  # the recent job stays
    assert q._runtime.master.archive_pruned_total == 2500
