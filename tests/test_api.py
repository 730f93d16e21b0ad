"""The public API, call by call, against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from datetime import timedelta

import pytest

import queuer
from queuer import (
    BatchJob,
    JobAlreadyEndedError,
    JobNotFoundError,
    JobStatus,
    JobWaitTimeoutError,
    OnError,
    Options,
    RetryBackoff,
    WorkerStatus,
)
from tests.support import count, wait_until


def add(a, b=0):
    return a + b


def fail(message):
    raise ValueError(message)


def test_add_job_positional_and_keyword_arguments_reach_the_task(make_queuer):
    seen = []

    def record(*args, **kwargs):
        seen.append((args, kwargs))
        return {"args": list(args), "kwargs": kwargs}

    q = make_queuer()
    q.add_task(record)
    q.start()
    job = q.add_job(record, 5, "12", paramKeyed1="test", debug=True)
    assert job.status == JobStatus.QUEUED and job.task_name == "record"
    done = q.wait_for_job_finished(job.rid, timeout_seconds=10)
    assert done.status == JobStatus.SUCCEEDED
    assert done.result == {"args": [5, "12"], "kwargs": {"paramKeyed1": "test", "debug": True}}
    assert seen == [((5, "12"), {"paramKeyed1": "test", "debug": True})]
    assert done.attempts == 1 and done.ended_at is not None


def test_task_by_name_and_module_decorator(make_queuer):
    @queuer.task(name="decorated-square")
    def square(x):
        return x * x

    q = make_queuer()  # created after the decorator: picks the task up
    q.start()
    done = q.wait_for_job_finished(q.add_job("decorated-square", 7).rid, 10)
    assert done.result == 49


def test_instance_decorator_and_add_task_with_name(make_queuer):
    q = make_queuer()

    @q.task(name="triple")
    def triple(x):
        return 3 * x

    q.add_task_with_name(add, "adder")
    q.start()
    assert q.wait_for_job_finished(q.add_job(triple, 2).rid, 10).result == 6
    assert q.wait_for_job_finished(q.add_job("adder", 2, b=5).rid, 10).result == 7
    assert sorted(q.worker.available_tasks) == sorted(q.tasks)


def test_async_task_runs_on_an_event_loop(make_queuer):
    async def slow_add(a, b):
        await asyncio.sleep(0.01)
        return a + b

    q = make_queuer()
    q.add_task(slow_add)
    q.start()
    assert q.wait_for_job_finished(q.add_job(slow_add, 1, 2).rid, 10).result == 3


def test_add_jobs_batch_with_copy(make_queuer, db_config):
    q = make_queuer()
    q.add_task(add)
    rids = q.add_jobs(
        [
            BatchJob(task=add, parameters=[1, 2]),
            BatchJob(task=add, parameters=[2], parameters_keyed={"b": 3}),
            BatchJob(task="add", parameters_keyed={"a": 3, "b": 4}),
        ]
    )
    assert len(rids) == 3 and all(isinstance(r, uuid.UUID) for r in rids)
    assert count(db_config, "SELECT count(*) FROM {schema}.job WHERE status = 'QUEUED'") == 3
    q.start()
    results = [q.wait_for_job_finished(r, 10).result for r in rids]
    assert results == [3, 5, 7]


def test_wait_for_job_finished_times_out_clearly(make_queuer):
    q = make_queuer()
    q.add_task(add)
    job = q.add_job(add, 1)  # no worker started
    started = time.monotonic()
    with pytest.raises(JobWaitTimeoutError, match="still QUEUED"):
        q.wait_for_job_finished(job.rid, timeout_seconds=0.3)
    assert time.monotonic() - started < 3
    with pytest.raises(JobNotFoundError):
        q.wait_for_job_finished(uuid.uuid4(), timeout_seconds=0.1)


def test_wait_is_woken_by_notify_not_by_polling(make_queuer):
    q = make_queuer()
    q.add_task(add)
    q.start()
    job = q.add_job(add, 1, 1)
    started = time.monotonic()
    q.wait_for_job_finished(job.rid, timeout_seconds=10)
    # The fallback re-check runs every 5 s: finishing well before means NOTIFY woke us.
    assert time.monotonic() - started < 2.0


def test_get_job_get_job_ended_and_get_jobs(make_queuer):
    q = make_queuer()
    q.add_task(add)
    jobs = [q.add_job(add, i) for i in range(5)]
    assert q.get_job(jobs[0].rid).status == JobStatus.QUEUED
    with pytest.raises(JobNotFoundError):
        q.get_job_ended(jobs[0].rid)
    queued = q.get_jobs(status="queued")
    assert [j.rid for j in queued] == [j.rid for j in jobs]
    page1 = q.get_jobs(limit=2)
    page2 = q.get_jobs(limit=2, after_id=page1[-1].id)
    page3 = q.get_jobs(limit=2, offset=4)
    assert [j.rid for j in page1 + page2 + page3] == [j.rid for j in jobs]
    q.start()
    for job in jobs:
        q.wait_for_job_finished(job.rid, 10)
    assert q.get_job(jobs[0].rid).status == JobStatus.SUCCEEDED
    assert q.get_job_ended(jobs[1].rid).result == 1
    assert len(q.get_jobs(status=JobStatus.SUCCEEDED)) == 5
    assert q.get_jobs(status="QUEUED") == []
    with pytest.raises(JobNotFoundError):
        q.get_job(uuid.uuid4())


def test_get_jobs_by_worker_rid_shows_running_jobs(make_queuer):
    release = threading.Event()

    def hold():
        release.wait(10)
        return "held"

    q = make_queuer()
    q.add_task(hold)
    q.start()
    job = q.add_job(hold)
    running = wait_until(lambda: q.get_jobs_by_worker_rid(q.worker.rid), message="job running")
    assert [j.rid for j in running] == [job.rid]
    assert running[0].status == JobStatus.RUNNING
    assert q.get_jobs(status=JobStatus.RUNNING)[0].worker_rid == q.worker.rid
    release.set()
    assert q.wait_for_job_finished(job.rid, 10).result == "held"


def test_cancel_queued_job_and_cancel_ended_job(make_queuer, db_config):
    q = make_queuer()
    q.add_task(add)
    job = q.add_job(add, 1)
    cancelled = q.cancel_job(job.rid)
    assert cancelled.status == JobStatus.CANCELLED
    assert count(db_config, "SELECT count(*) FROM {schema}.job") == 0
    assert q.get_job_ended(job.rid).status == JobStatus.CANCELLED
    with pytest.raises(JobAlreadyEndedError, match="already ended as CANCELLED"):
        q.cancel_job(job.rid)
    with pytest.raises(JobNotFoundError):
        q.cancel_job(uuid.uuid4())


def test_failed_attempts_retry_with_backoff_then_fail(make_queuer):
    calls = []

    def flaky(tag):
        calls.append(time.monotonic())
        raise RuntimeError(f"flaky {tag}")

    q = make_queuer()
    q.add_task(flaky)
    q.start()
    options = Options(on_error=OnError(max_retries=2, retry_delay=0.2, retry_backoff=RetryBackoff.EXPONENTIAL, timeout=0))
    job = q.add_job_with_options(options, flaky, "x")
    done = q.wait_for_job_finished(job.rid, 20)
    assert done.status == JobStatus.FAILED
    assert done.attempts == 3 and len(calls) == 3  # exactly 1 + max_retries runs
    assert "RuntimeError: flaky x" in done.error and "Traceback" in done.error
    gaps = [b - a for a, b in zip(calls, calls[1:])]
    assert gaps[0] >= 0.18 and gaps[1] >= 0.38  # 0.2 s, then 0.4 s


def test_retry_succeeds_on_a_later_attempt(make_queuer):
    def second_time_lucky():
        if queuer.current_job().attempt < 2:
            raise RuntimeError("not yet")
        return "ok"

    q = make_queuer(OnError(max_retries=3, retry_delay=0, timeout=None))
    q.add_task(second_time_lucky)
    q.start()
    done = q.wait_for_job_finished(q.add_job(second_time_lucky).rid, 10)
    assert (done.status, done.attempts, done.result) == (JobStatus.SUCCEEDED, 2, "ok")


def test_unserializable_result_fails_the_job_clearly(make_queuer):
    def returns_object():
        return object()

    q = make_queuer()
    q.add_task(returns_object)
    q.start()
    done = q.wait_for_job_finished(q.add_job(returns_object).rid, 10)
    assert done.status == JobStatus.FAILED
    assert "not JSON-serializable" in done.error


def test_readd_job_from_archive(make_queuer):
    q = make_queuer()
    q.add_task(add)
    q.start()
    first = q.wait_for_job_finished(q.add_job(add, 20, b=1).rid, 10)
    again = q.readd_job_from_archive(first.rid)
    assert again.rid != first.rid and again.origin_rid == first.rid
    done = q.wait_for_job_finished(again.rid, 10)
    assert done.result == 21 and done.origin_rid == first.rid


def test_listeners_see_insert_update_and_delete(make_queuer):
    events = {"insert": [], "update": [], "delete": []}
    q = make_queuer(OnError(max_retries=1, retry_delay=0, timeout=None))
    q.listen_for_job_insert(lambda job: events["insert"].append(job))
    q.listen_for_job_update(lambda job: events["update"].append(job))
    q.listen_for_job_delete(lambda job: events["delete"].append(job))
    q.add_task(fail)
    job = q.add_job(fail, "boom")
    q.start()
    q.wait_for_job_finished(job.rid, 10)
    wait_until(lambda: events["delete"], message="delete event")
    assert [e.rid for e in events["insert"]] == [job.rid]
    assert [e.rid for e in events["update"]] == [job.rid]  # the retry
    assert events["delete"][0].rid == job.rid and events["delete"][0].status == JobStatus.FAILED
    assert {e.task_name for e in events["insert"] + events["update"] + events["delete"]} == {"fail"}


def test_listeners_see_a_delayed_job_as_scheduled_and_a_cancelled_one_by_task(make_queuer):
    inserts, updates, deletes = [], [], []
    q = make_queuer()
    q.listen_for_job_insert(inserts.append)
    q.listen_for_job_update(updates.append)
    q.listen_for_job_delete(deletes.append)
    q.add_task(add)
    later = q.add_job_with_options(Options(execute_after=timedelta(hours=1)), add, 1)
    now = q.add_job(add, 2)
    wait_until(lambda: len(inserts) == 2, message="both inserts seen")
    assert {(e.rid, e.status) for e in inserts} == {(later.rid, JobStatus.SCHEDULED), (now.rid, JobStatus.QUEUED)}
    q.cancel_job(later.rid)
    wait_until(lambda: deletes and updates, message="cancel seen")
    assert (deletes[0].rid, deletes[0].status, deletes[0].task_name) == (later.rid, JobStatus.CANCELLED, "add")
    assert (updates[0].status, updates[0].task_name) == (JobStatus.CANCELLED, "add")


def test_a_retry_after_a_delay_is_seen_as_scheduled(make_queuer):
    updates = []
    q = make_queuer(OnError(max_retries=1, retry_delay=3600, retry_jitter=0))
    q.listen_for_job_update(updates.append)
    q.add_task(fail)
    q.start()
    job = q.add_job(fail, "later")
    wait_until(lambda: updates, message="the retry seen")
    assert (updates[0].rid, updates[0].status, updates[0].task_name) == (job.rid, JobStatus.SCHEDULED, "fail")
    assert q.get_job(job.rid).status == JobStatus.SCHEDULED


def test_cancel_jobs_announces_many_jobs_in_a_few_notifications(make_queuer):
    import psycopg

    q = make_queuer()
    q.add_task(add)
    rids = q.add_jobs([BatchJob(add, [i]) for i in range(1000)])
    with psycopg.connect(**q.db_config.connect_kwargs(), autocommit=True) as listener:
        listener.execute(f'LISTEN "{q.db.channel}"')
        assert len(q.cancel_jobs(rids)) == 1000
        payloads = [n.payload for n in listener.notifies(timeout=1.0)]
    events = [event for payload in payloads for event in json.loads(payload)["j"]]
    assert sorted(e[0] for e in events) == ["cancel"] * 1000 + ["end"] * 1000
    assert len(payloads) < 100 and max(len(p.encode()) for p in payloads) < 8000


def test_cancel_jobs_refuses_a_single_rid(make_queuer):
    q = make_queuer()
    q.add_task(add)
    job = q.add_job(add, 1)
    for single in (job.rid, str(job.rid), job):
        with pytest.raises(TypeError, match="iterable of rids"):
            q.cancel_jobs(single)
    assert q.get_job(job.rid).status == JobStatus.QUEUED
    assert [j.rid for j in q.cancel_jobs(iter([str(job.rid)]))] == [job.rid]


def test_a_failing_listener_does_not_stop_others(make_queuer):
    seen = []

    def broken(job):
        raise RuntimeError("listener bug")

    q = make_queuer()
    q.listen_for_job_insert(broken)
    q.listen_for_job_insert(lambda job: seen.append(job.rid))
    q.add_task(add)
    first = q.add_job(add, 1)
    second = q.add_job(add, 2)
    wait_until(lambda: len(seen) == 2, message="both inserts seen")
    assert seen == [first.rid, second.rid]


def test_worker_row_lifecycle_and_stop_leaves_no_threads(make_queuer):
    before = {t.ident for t in threading.enumerate()}
    q = make_queuer()
    q.add_task(add)
    # The constructor registers the worker row READY: it claims nothing until start().
    assert q.worker.status == WorkerStatus.READY and "add" in q.worker.available_tasks
    assert [w.status for w in q.get_workers()] == [WorkerStatus.READY]
    q.start()
    assert q.get_worker(q.worker.rid).status == WorkerStatus.RUNNING
    q.wait_for_job_finished(q.add_job(add, 1).rid, 10)
    rid = q.worker.rid
    q.stop()
    assert not q.running
    leftover = [t for t in threading.enumerate() if t.ident not in before and t.is_alive()]
    wait_until(lambda: not [t for t in leftover if t.is_alive()], timeout=10, message="threads to end")
    with make_queuer() as other:
        assert other.get_worker(rid).status == WorkerStatus.STOPPED


def test_worker_claims_only_its_registered_tasks(make_queuer):
    def mine():
        return "mine"

    q = make_queuer()
    q.add_task(mine)
    q.start()
    foreign = q.add_job("someone-elses-task")
    done = q.wait_for_job_finished(q.add_job(mine).rid, 10)
    assert done.result == "mine"
    assert q.get_job(foreign.rid).status == JobStatus.QUEUED


def test_priority_runs_higher_first(make_queuer):
    order = []

    def record(tag):
        order.append(tag)

    q = make_queuer(max_concurrency=1)
    q.add_task(record)
    q.add_job_with_options(Options(priority=0), record, "low")
    q.add_job_with_options(Options(priority=5), record, "high")
    q.add_job_with_options(Options(priority=5), record, "high-2")
    last = q.add_job_with_options(Options(priority=-1), record, "lowest")
    q.start()
    q.wait_for_job_finished(last.rid, 10)
    assert order == ["high", "high-2", "low", "lowest"]


def test_current_job_outside_a_task_raises():
    with pytest.raises(RuntimeError, match="only available inside a running task"):
        queuer.current_job()


def test_next_interval_functions_register_by_name(make_queuer):
    from datetime import datetime, timedelta

    def every_hour(start: datetime, count: int) -> datetime:
        return start + timedelta(hours=count)

    q = make_queuer()
    q.add_next_interval_func(every_hour)
    q.add_next_interval_func_with_name(every_hour, "hourly")
    assert q.next_interval_funcs == {"every_hour": every_hour, "hourly": every_hour}
    with pytest.raises(RuntimeError, match="NextIntervalFunc already exists: hourly"):
        q.add_next_interval_func_with_name(lambda s, c: s, "hourly")


def test_delayed_job_waits_as_scheduled_then_runs(make_queuer):
    from datetime import datetime, timedelta, timezone

    q = make_queuer()
    q.add_task(add)
    q.start()
    start = datetime.now(timezone.utc) + timedelta(seconds=1)
    job = q.add_job_with_options(Options(schedule=queuer.Schedule(start=start)), add, 1, 2)
    assert job.status == JobStatus.SCHEDULED
    done = q.wait_for_job_finished(job.rid, 10)
    assert done.result == 3 and done.started_at >= start
    assert (done.started_at - start).total_seconds() < 2.0  # woken at the due time, not by a long poll


def test_get_workers_lists_running_workers(make_queuer):
    a, b = make_queuer(name="a"), make_queuer(name="b")
    a.start()
    b.start()
    running = a.get_workers(status="RUNNING")
    assert {w.name for w in running} == {"a", "b"}
    assert all(w.pid and w.host and w.max_concurrency == 4 for w in running)


def test_execute_after_timedelta_and_datetime(make_queuer, db_config):
    from datetime import datetime, timedelta, timezone

    q = make_queuer()
    q.add_task(add)
    q.start()
    added = datetime.now(timezone.utc)
    by_delay = q.add_job_with_options(Options(execute_after=timedelta(seconds=0.8)), add, 1)
    at = datetime.now(timezone.utc) + timedelta(seconds=0.5)
    by_time = q.add_job_with_options(Options(execute_after=at), add, 2)
    [batched] = q.add_jobs([BatchJob(task=add, parameters=[3], execute_after=timedelta(seconds=0.6))])
    assert by_delay.status == JobStatus.SCHEDULED and by_time.status == JobStatus.SCHEDULED
    done = {j: q.wait_for_job_finished(j, 10) for j in (by_delay.rid, by_time.rid, batched)}
    assert done[by_delay.rid].started_at >= added + timedelta(seconds=0.8)
    assert done[by_time.rid].started_at >= at
    assert done[batched].started_at >= added + timedelta(seconds=0.6)
    with pytest.raises(ValueError, match="datetime or a timedelta"):
        Options(execute_after=5)


def test_a_deprecated_name_still_imports_and_says_so():
    import queuer

    with pytest.warns(DeprecationWarning, match="never raised"):
        from queuer import QueuerStoppedError
    assert issubclass(QueuerStoppedError, queuer.QueuerError)
    with pytest.raises(AttributeError):
        queuer.no_such_name  # noqa: B018
