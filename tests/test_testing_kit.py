"""queuer.testing: the plugin's fixture and the helpers a user's suite tests tasks with."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import warnings
from datetime import timedelta

import pytest

import queuer
from queuer import JobStatus, OnError, Options, new_queuer
from queuer.testing import (
    assert_enqueued,
    drain,
    enqueued_jobs,
    job_context,
    refute_enqueued,
    run_task,
    run_task_in,
)


def double(n: int) -> int:
    return 2 * n


def flaky(marker: list) -> str:
    if queuer.current_job().attempt == 1:
        raise RuntimeError("first attempt fails")
    return "second attempt"


@pytest.fixture
def q(queuer_db):
    with new_queuer("kit", 2, OnError(max_retries=1, retry_delay=60, timeout=None)) as q:
        q.add_task(double)
        q.add_task(flaky)
        yield q


def test_queuer_db_points_the_environment_at_a_fresh_schema(queuer_db, q):
    assert os.environ["QUEUER_DB_SCHEMA"] == queuer_db.schema != "public"
    assert q.db_config.schema == queuer_db.schema
    assert q.get_jobs() == []


def test_drain_runs_due_jobs_in_the_calling_thread(q):
    ran_in: list[str] = []

    def where() -> str:
        ran_in.append(threading.current_thread().name)
        return "here"

    q.add_task(where)
    rids = [q.add_job(double, i).rid for i in range(5)] + [q.add_job(where).rid]
    later = q.add_job_with_options(Options(execute_after=timedelta(hours=1)), double, 100)
    ended = drain(q)
    assert [job.rid for job in ended] == rids
    assert [job.result for job in ended] == [0, 2, 4, 6, 8, "here"]
    assert ran_in == [threading.current_thread().name]
    assert_enqueued(q, double, args=[100])  # not due: left alone
    assert [job.result for job in drain(q, with_scheduled=True)] == [200]
    assert q.get_job_ended(later.rid).status == JobStatus.SUCCEEDED
    assert q.worker.status.value == "READY"


def test_drain_with_scheduled_runs_retries_now(q):
    job = q.add_job(flaky, [])
    assert drain(q) == []  # the retry waits 60 s
    ended = drain(q, with_scheduled=True)
    assert [(j.rid, j.status, j.result, j.attempts) for j in ended] == [
        (job.rid, JobStatus.SUCCEEDED, "second attempt", 2)]


def test_drain_with_the_worker_uses_its_threads(q):
    rids = [q.add_job(double, i).rid for i in range(20)]
    ended = drain(q, in_thread=False)
    assert sorted(job.rid for job in ended) == sorted(rids)
    assert not q.running


def test_drain_refuses_a_started_queuer_and_times_out_on_an_endless_schedule(q):
    q.start()
    with pytest.raises(RuntimeError, match="in_thread=False"):
        drain(q)
    q.stop()
    from queuer import Schedule

    q.add_job_with_options(Options(schedule=Schedule(interval=timedelta(hours=1), max_count=0)), double, 1)
    with pytest.raises(TimeoutError, match="never drains"):
        drain(q, timeout=0.5, with_scheduled=True)


def test_assert_and_refute_enqueued_show_what_is_there(q):
    q.add_job(double, 3)
    q.add_job(flaky, [1, (2, 3)])
    assert len(assert_enqueued(q, double)) == 1
    assert_enqueued(q, double, args=(3,), count=1)
    assert_enqueued(q, "flaky", args=[[1, [2, 3]]])  # compared as the task will see them: through JSON
    refute_enqueued(q, double, args=[4])
    with pytest.raises(AssertionError) as missing:
        assert_enqueued(q, double, args=[4])
    assert "expected an enqueued job of 'double' with args=[4], found none" in str(missing.value)
    assert "double QUEUED args=[3]" in str(missing.value)
    with pytest.raises(AssertionError, match="expected no enqueued job of 'double'"):
        refute_enqueued(q, double)
    with pytest.raises(AssertionError, match="expected 2 enqueued"):
        assert_enqueued(q, double, count=2)


def test_run_task_calls_as_the_worker_would():
    def who_am_i(tags: tuple) -> dict:
        job = queuer.current_job()
        return {"attempt": job.attempt, "tags": tags, "rid": str(job.rid)}

    out = run_task(who_am_i, ("a", "b"))
    assert out["attempt"] == 1 and out["tags"] == ["a", "b"]  # a tuple arrives as a list
    with pytest.raises(TypeError, match="would not survive the queue"):
        run_task(who_am_i, {1, 2})
    with pytest.raises(TypeError, match="result"):
        run_task(lambda: object())
    with pytest.raises(RuntimeError, match="only available inside a running task"):
        queuer.current_job()


def test_run_task_in_a_context_the_test_cancels():
    started = threading.Event()

    async def waits() -> str:
        started.set()
        await asyncio.sleep(10)
        return "slept"

    context = job_context(attempt=3, max_attempts=3)
    threading.Thread(target=lambda: started.wait(5) and context.cancel("test says stop"), daemon=True).start()
    with pytest.raises(asyncio.CancelledError):
        run_task_in(context, waits)
    assert context.is_cancelled() and context.cancel_reason == "test says stop"


async def async_double(n: int) -> int:
    await asyncio.sleep(0)
    return 2 * n


def test_drain_closes_the_event_loop_of_async_tasks(q):
    q.add_task(async_double)
    q.add_job(async_double, 4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        assert [job.result for job in drain(q)] == [8]
        gc.collect()  # an unclosed loop warns when collected (an error under filterwarnings=error)
    # Only the loops' own warnings: gc.collect() also finalizes whatever earlier tests left behind.
    loops = [w for w in caught if issubclass(w.category, ResourceWarning) and "event loop" in str(w.message)]
    assert not loops, [str(w.message) for w in loops]


@pytest.mark.parametrize("interruption", [KeyboardInterrupt, pytest.fail.Exception])
def test_ctrl_c_or_a_pytest_timeout_inside_a_task_ends_the_drain_and_puts_its_jobs_back(q, interruption):
    def interrupted() -> None:
        raise interruption("stop the run")  # what Ctrl-C or pytest-timeout raises in the running task

    q.add_task(interrupted)
    first, second = q.add_job(interrupted), q.add_job(double, 1)
    with pytest.raises(interruption):
        drain(q)
    assert {job.status for job in enqueued_jobs(q)} == {JobStatus.QUEUED}
    assert {job.rid for job in enqueued_jobs(q)} == {first.rid, second.rid}
    assert q.worker.status.value == "READY"


def test_drain_puts_its_jobs_back_when_the_database_fails_midway(q, monkeypatch):
    import psycopg

    rids = {q.add_job(double, i).rid for i in range(3)}

    def lost(*args, **kwargs):
        raise psycopg.OperationalError("the connection was lost")

    with monkeypatch.context() as patch:
        patch.setattr(q.attempt_db, "record_outcomes", lost)
        with pytest.raises(psycopg.OperationalError):
            drain(q)
    assert {(job.rid, job.status) for job in enqueued_jobs(q)} == {(rid, JobStatus.QUEUED) for rid in rids}
    assert {job.rid for job in drain(q)} == rids  # not left RUNNING under a worker that never runs them


def test_run_task_in_a_context_cancelled_after_the_run_and_tasks_left_running():
    ticks: list[int] = []

    async def leaves_a_task() -> str:
        async def forever() -> None:
            while True:
                ticks.append(1)
                await asyncio.sleep(0)

        asyncio.get_running_loop().create_task(forever())
        await asyncio.sleep(0)
        return "done"

    context = job_context()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Task was destroyed but it is pending" and unclosed loops
        assert run_task_in(context, leaves_a_task) == "done"
        gc.collect()
    seen = len(ticks)
    context.cancel("too late")  # its loop is closed: nothing left to interrupt, and no error
    assert context.is_cancelled() and len(ticks) == seen


def test_queuer_db_passes_every_connection_setting_of_the_test_dsn_on():
    from queuer.config.database import DatabaseConfiguration
    from queuer.testing.server import environment

    config = DatabaseConfiguration.from_url("host=db.test port=6543 dbname=app user=ci sslmode=verify-full "
                             "sslrootcert=/ca.pem options='-c lock_timeout=5s'")
    again = DatabaseConfiguration.from_env(environment(config.with_schema("test_x")))
    assert (again.host, again.port, again.database, again.username, again.schema) == (
        "db.test", 6543, "app", "ci", "test_x")
    assert again.sslmode == "verify-full"
    assert again.extra == {"sslrootcert": "/ca.pem", "options": "-c lock_timeout=5s"}


def test_looking_for_docker_without_a_daemon_leaves_no_open_socket(tmp_path, monkeypatch):
    pytest.importorskip("docker")
    from queuer.testing.server import _docker_answers

    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        assert _docker_answers() is False
        gc.collect()
    # Only the loops' own warnings: gc.collect() also finalizes whatever earlier tests left behind.
    loops = [w for w in caught if issubclass(w.category, ResourceWarning) and "event loop" in str(w.message)]
    assert not loops, [str(w.message) for w in loops]


def test_run_task_and_drain_work_from_async_code(q):
    # An async test (pytest-asyncio, anyio) already runs an event loop in this thread.
    async def who() -> str:
        await asyncio.sleep(0)
        return str(queuer.current_job().rid)

    q.add_task(async_double)
    q.add_job(async_double, 5)
    context = job_context()

    async def an_async_test() -> tuple:
        return run_task_in(context, who), [job.result for job in drain(q)]

    assert asyncio.run(an_async_test()) == (str(context.rid), [10])
