"""Control from inside and outside a job: snooze."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

import queuer
from queuer import BatchJob, JobStatus, OnError, Snooze
from tests.support import FAST, count, sql, start_worker_process, stop_process, wait_until


def test_a_job_that_snoozes_three_times_then_succeeds_spends_no_retry(make_queuer):
    woke: list[float] = []

    def patient() -> str:
        woke.append(time.monotonic())
        if queuer.current_job().attempt <= 3:
            raise Snooze(0.2)
        return "done"

    q = make_queuer(OnError(max_retries=0))
    q.add_task(patient)
    q.start()
    done = q.wait_for_job_finished(q.add_job(patient).rid, 20)
    assert (done.status, done.result, done.failures, done.snoozes, done.attempts) == (
        JobStatus.SUCCEEDED, "done", 0, 3, 4)
    gaps = [later - earlier for earlier, later in zip(woke, woke[1:])]
    assert len(gaps) == 3 and all(0.2 <= gap < 0.25 for gap in gaps), gaps  # honoured to within 50 ms


def test_an_async_task_snoozes_too(make_queuer):
    async def later() -> int:
        if queuer.current_job().attempt == 1:
            raise Snooze(0)
        return 7

    q = make_queuer()
    q.add_task(later)
    q.start()
    done = q.wait_for_job_finished(q.add_job(later).rid, 20)
    assert (done.status, done.result, done.snoozes) == (JobStatus.SUCCEEDED, 7, 1)


def test_a_runaway_snoozer_ends_failed_after_max_snoozes(make_queuer):
    def forever() -> None:
        raise Snooze(0)

    q = make_queuer(settings=replace(FAST, max_snoozes=5))
    q.add_task(forever)
    q.start()
    done = q.wait_for_job_finished(q.add_job(forever).rid, 20)
    assert done.status is JobStatus.FAILED and done.snoozes == 5
    assert "SnoozeLimitError" in done.error and "max_snoozes" in done.error


def test_a_snooze_of_no_number_fails_the_job_with_a_clear_error(make_queuer):
    def odd() -> None:
        raise Snooze("soon")  # type: ignore[arg-type]

    q = make_queuer(OnError(max_retries=3))
    q.add_task(odd)
    q.start()
    done = q.wait_for_job_finished(q.add_job(odd).rid, 20)
    assert done.status is JobStatus.FAILED and "Snooze takes a number of seconds" in done.error
    assert done.attempts == 1  # not retried: it fails the same way every time


# -- pausing a task everywhere, limits at runtime --------------------------------------------------


def test_pause_stops_new_starts_keeps_running_jobs_and_holds_for_new_workers(make_queuer, db_config):
    started: list[str] = []

    def slow(tag: str) -> str:
        started.append(tag)
        time.sleep(0.3)
        return tag

    first = make_queuer(max_concurrency=2, name="first")
    first.add_task(slow)
    first.start()
    running = first.add_job(slow, "running")
    wait_until(lambda: "running" in started, message="the first job started")
    first.pause_task("slow")
    paused_at = time.monotonic()
    waiting = [first.add_job(slow, f"w{i}") for i in range(5)]
    assert first.wait_for_job_finished(running.rid, 10).status is JobStatus.SUCCEEDED  # running ones finish
    later = make_queuer(max_concurrency=2, name="later")  # a worker started during the pause
    later.add_task(slow)
    later.start()
    wait_until(lambda: time.monotonic() - paused_at > 1.5, timeout=5)
    assert started == ["running"]
    assert all(first.get_job(job.rid).status is JobStatus.QUEUED for job in waiting)
    controls = first.task_controls()
    assert [(c.task_name, c.paused) for c in controls] == [("slow", True)]
    first.resume_task("slow")
    resumed_at = time.monotonic()
    wait_until(lambda: len(started) > 1, timeout=5, message="a job started after resume")
    assert time.monotonic() - resumed_at < 1.0
    for job in waiting:
        assert first.wait_for_job_finished(job.rid, 20).status is JobStatus.SUCCEEDED


def test_set_task_limits_changes_a_limit_on_running_workers(make_queuer):
    import threading

    running, most = [0], [0]
    lock = threading.Lock()

    def counted() -> None:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1

    q = make_queuer(max_concurrency=8)
    q.add_task(counted)
    q.start()
    q.set_task_limits("counted", concurrency_limit=2)
    jobs = [q.add_job(counted) for _ in range(20)]
    for job in jobs:
        q.wait_for_job_finished(job.rid, 20)
    assert most[0] == 2
    q.reset_task_limits("counted")
    most[0] = 0
    jobs = [q.add_job(counted) for _ in range(20)]
    for job in jobs:
        q.wait_for_job_finished(job.rid, 20)
    assert most[0] > 2
    with pytest.raises(ValueError, match="concurrency_limit"):
        q.set_task_limits("counted", concurrency_limit=0)


@pytest.mark.load
def test_pause_under_load_reaches_3_worker_processes_within_a_second(make_queuer, db_config):
    producer = make_queuer()
    producer.add_jobs([BatchJob(task="timed", parameters_keyed={"seconds": 0.02}) for _ in range(3000)])
    workers = [start_worker_process(db_config, "--concurrency", "4") for _ in range(3)]
    late = None
    try:
        wait_until(lambda: count(db_config, "SELECT count(*) FROM {schema}.job_archive") > 200, timeout=60,
                   message="the workers are busy")
        paused_at = time.time()
        producer.pause_task("timed")
        late = start_worker_process(db_config, "--concurrency", "4")  # started during the pause
        wait_until(lambda: time.time() - paused_at > 2.5, timeout=10)
        ended = producer.get_jobs_ended(limit=5000)
        starts = sorted(job.result["start"] for job in ended if job.result)
        assert starts and starts[-1] < paused_at + 1.0, starts[-1] - paused_at
        waiting = count(db_config, "SELECT count(*) FROM {schema}.job WHERE status = 'QUEUED'")
        assert waiting > 1000 and count(db_config, "SELECT count(*) FROM {schema}.job WHERE status = 'RUNNING'") == 0
        resumed_at = time.time()
        producer.resume_task("timed")
        wait_until(lambda: count(db_config, "SELECT count(*) FROM {schema}.job_archive") > len(ended), timeout=10)
        restarted = min(job.result["start"] for job in producer.get_jobs_ended(limit=10_000)
                        if job.result and job.result["start"] > resumed_at)
        assert restarted - resumed_at < 1.0
    finally:
        for w in [*workers, *([late] if late else [])]:
            stop_process(w)


# -- completing a job inside the task's own transaction -------------------------------------------


@pytest.mark.crash
@pytest.mark.parametrize("die", ["after", "before"])
def test_complete_tx_is_exactly_once_on_the_tasks_own_table(make_queuer, db_config, tmp_path, die):
    sql(db_config, "CREATE TABLE {schema}.ledger (tag text NOT NULL)")
    log = tmp_path / "runs.log"
    producer = make_queuer()
    job = producer.add_job("ledger", "order-7", die=die)
    env = {"QUEUER_TEST_RUN_LOG": str(log)}
    worker = start_worker_process(db_config, "--concurrency", "2", **env)
    try:
        assert worker.wait(60) == -9  # it killed itself, as asked
        if die == "before":  # nothing of the first attempt stayed; the job runs again elsewhere
            worker = start_worker_process(db_config, "--concurrency", "2", **env)
        done = producer.wait_for_job_finished(job.rid, 60)
    finally:
        stop_process(worker)
    assert done.status is JobStatus.SUCCEEDED and done.result == "booked order-7"
    assert count(db_config, "SELECT count(*) FROM {schema}.ledger WHERE tag = 'order-7'") == 1
    assert count(db_config, "SELECT count(*) FROM {schema}.job_archive WHERE rid = %s", (job.rid,)) == 1
    runs = log.read_text().split("\n")
    assert len([line for line in runs if line.startswith("ledger")]) == (1 if die == "after" else 2)


def test_complete_tx_from_an_attempt_that_lost_its_job_aborts_the_transaction(make_queuer, db_config):
    import psycopg

    from queuer import CompletionRefusedError

    seen: list[str] = []

    def late() -> None:
        job = queuer.current_job()
        q.cancel_job(job.rid)  # the attempt no longer holds the job
        with psycopg.connect(**db_config.connect_kwargs()) as conn:
            try:
                with conn.transaction():
                    conn.execute(f'INSERT INTO "{db_config.schema}".ledger (tag) VALUES (%s)', ("late",))
                    job.complete_tx(conn, "too late")
            except CompletionRefusedError as exc:
                seen.append(str(exc))

    sql(db_config, "CREATE TABLE {schema}.ledger (tag text NOT NULL)")
    q = make_queuer()
    q.add_task(late)
    q.start()
    ended = q.wait_for_job_finished(q.add_job(late).rid, 20)
    wait_until(lambda: seen, timeout=10)
    assert ended.status is JobStatus.CANCELLED and "no longer holds the job" in seen[0]
    assert count(db_config, "SELECT count(*) FROM {schema}.ledger") == 0


# -- debounce and windows ------------------------------------------------------------------------


def test_a_burst_of_100_concurrent_replacing_adds_runs_once_with_the_last_arguments(make_queuer, db_config):
    import threading
    from datetime import timedelta

    from queuer import Options

    runs: list[int] = []

    def reindex(n: int) -> int:
        runs.append(n)
        return n

    q = make_queuer(max_concurrency=4)
    q.add_task(reindex)
    options = Options(unique_key="reindex", on_duplicate="replace", execute_after=timedelta(seconds=0.5))
    added: list = []
    start = threading.Barrier(20)

    def burst(offset: int) -> None:
        start.wait()
        for i in range(offset, 100, 20):
            added.append(q.add_job_with_options(options, reindex, i))

    threads = [threading.Thread(target=burst, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({job.rid for job in added}) == 1  # one job, replaced 99 times
    assert count(db_config, "SELECT count(*) FROM {schema}.job") == 1
    last = sql(db_config, "SELECT parameters->>0 FROM {schema}.job")[0][0]
    q.start()
    done = q.wait_for_job_finished(added[0].rid, 10)
    assert runs == [int(last)] and done.result == int(last)


def test_replace_moves_the_start_and_leaves_a_running_job_alone(make_queuer):
    from datetime import timedelta

    from queuer import Options

    q = make_queuer()
    q.add_task(len)
    later = Options(unique_key="k", on_duplicate="replace", execute_after=timedelta(hours=1))
    first = q.add_job_with_options(later, len, "a")
    moved = q.add_job_with_options(Options(unique_key="k", on_duplicate="replace"), len, "abc")
    assert moved.rid == first.rid and moved.status is JobStatus.QUEUED and moved.parameters == ["abc"]
    assert moved.scheduled_at < first.scheduled_at

    import threading

    release = threading.Event()

    def busy(tag: str) -> str:
        release.wait(10)
        return tag

    q.add_task(busy)
    q.start()
    running = q.add_job_with_options(Options(unique_key="b", on_duplicate="replace"), busy, "first")
    wait_until(lambda: q.get_job(running.rid).status is JobStatus.RUNNING)
    same = q.add_job_with_options(Options(unique_key="b", on_duplicate="replace"), busy, "second")
    assert same.rid == running.rid and same.parameters == ["first"] and same.status is JobStatus.RUNNING
    release.set()
    assert q.wait_for_job_finished(running.rid, 10).result == "first"


def test_unique_for_counts_jobs_that_ended_in_the_window(make_queuer):
    from datetime import timedelta

    from queuer import DuplicateJobError, Options

    q = make_queuer()
    q.add_task(len)
    q.start()
    window = Options(unique_key="daily-report", unique_for=timedelta(minutes=5), on_duplicate="skip")
    first = q.add_job_with_options(window, len, "ab")
    assert q.wait_for_job_finished(first.rid, 10).status is JobStatus.SUCCEEDED
    again = q.add_job_with_options(window, len, "abc")
    assert again.rid == first.rid and again.status is JobStatus.SUCCEEDED  # the one that ran, not a new one
    with pytest.raises(DuplicateJobError):
        q.add_job_with_options(Options(unique_key="daily-report", unique_for=timedelta(minutes=5)), len, "x")
    outside = q.add_job_with_options(Options(unique_key="daily-report", unique_for=timedelta(microseconds=1)), len, "y")
    assert outside.rid != first.rid
    with pytest.raises(ValueError, match="unique_for needs a unique_key"):
        Options(unique_for=timedelta(minutes=5))


# -- groups: limits per key, and fairness between keys ------------------------------------------


def _most_at_once(spans: list[tuple[float, float]]) -> int:
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    most = running = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


@pytest.mark.load
def test_a_group_limit_holds_across_3_worker_processes(make_queuer, db_config):
    from queuer import Options

    producer = make_queuer()
    for key in ("tenant-a", "tenant-b", "tenant-c"):
        producer.add_jobs([BatchJob(task="per_tenant", parameters_keyed={"seconds": 0.1},
                                    options=Options(group_key=key)) for _ in range(30)])
    workers = [start_worker_process(db_config, "--concurrency", "4", "--drain") for _ in range(3)]
    try:
        assert [w.wait(120) for w in workers] == [0, 0, 0]
    finally:
        for w in workers:
            stop_process(w)
    rows = sql(db_config, "SELECT group_key, (results->>'start')::float8, (results->>'end')::float8 "
                          "FROM {schema}.job_archive WHERE status = 'SUCCEEDED'")
    assert len(rows) == 90
    for key in ("tenant-a", "tenant-b", "tenant-c"):
        assert _most_at_once([(s, e) for k, s, e in rows if k == key]) <= 2, key
    assert _most_at_once([(s, e) for _, s, e in rows]) >= 5


def test_a_tenants_backlog_does_not_hold_up_another_tenants_jobs(make_queuer):
    from queuer import Options

    def work(tenant: str) -> str:
        time.sleep(0.01)
        return tenant

    q = make_queuer(max_concurrency=10)
    q.add_task(work, group_concurrency_limit=10)
    q.add_jobs([BatchJob(work, ["a"], options=Options(group_key="tenant-a")) for _ in range(5000)])
    q.start()
    wait_until(lambda: q.get_jobs_ended(limit=1), message="tenant a's backlog runs")
    added = time.monotonic()
    bs = [q.add_job_with_options(Options(group_key="tenant-b"), work, "b") for _ in range(10)]
    for job in bs:
        q.wait_for_job_finished(job.rid, 10)
    took = time.monotonic() - added
    assert took < 0.5, took
    assert count(q.db_config, "SELECT count(*) FROM {schema}.job WHERE group_key = 'tenant-a'") > 1000  # still running


def test_group_limits_and_whole_task_limits_do_not_mix(make_queuer):
    q = make_queuer()
    with pytest.raises(ValueError, match="per group or as a whole"):
        q.add_task(len, group_concurrency_limit=2, concurrency_limit=5)
    with pytest.raises(ValueError, match="group_key"):
        __import__("queuer").Options(group_key="")


def test_a_group_rate_limit_paces_each_key_on_its_own(make_queuer):
    import threading

    from queuer import Options

    starts: dict[str, list[float]] = {"x": [], "y": []}
    lock = threading.Lock()

    def paced(key: str) -> None:
        with lock:
            starts[key].append(time.monotonic())

    q = make_queuer(max_concurrency=8)
    q.add_task(paced, group_requests_per_second=10)
    for key in starts:
        q.add_jobs([BatchJob(paced, [key], options=Options(group_key=key)) for _ in range(15)])
    q.start()
    wait_until(lambda: all(len(s) == 15 for s in starts.values()), timeout=20, message="both keys ran")
    for key, times in starts.items():
        span = max(times) - min(times)
        # 15 starts at 10 a second, after a burst of 2: at least 1.2 s; each key paced on its own, not 2.7 s.
        assert 1.2 <= span < 2.2, (key, span)


def test_jobs_of_a_grouped_task_without_a_key_are_one_group_of_their_own(make_queuer, db_config):
    from queuer import Options

    q = make_queuer(max_concurrency=4)
    q.add_task(len, group_concurrency_limit=1)
    before = q.add_jobs([BatchJob(len, ["ab"]) for _ in range(3)])  # before any worker claims it by group
    q.start()
    after = [q.add_job(len, "abc"), q.add_job_with_options(Options(group_key="k"), len, "abcd")]
    for rid in [*before, *(job.rid for job in after)]:
        assert q.wait_for_job_finished(rid, 10).status is JobStatus.SUCCEEDED
    keys = sql(db_config, "SELECT group_key, count(*) FROM {schema}.job_archive GROUP BY 1 ORDER BY 1")
    assert keys == [("", 4), ("k", 1)]
