"""Code written against queuerPy's API behaves the same on queuer (apart from its import lines)."""

from __future__ import annotations

import pytest

import queuer
from queuer import (
    DatabaseConfiguration,
    JobStatus,
    OnError,
    QueuerError,
    Worker,
    WorkerStatus,
    new_queuer_with_db,
)
from queuer.errors import __all__ as error_names
from tests.support import count, sql, wait_until


def triple(x):
    return 3 * x


def nothing():
    return None


def boom():
    raise ValueError("no")


class Greeter:
    def __init__(self, greeting: str) -> None:
        self.greeting = greeting

    def greet(self, name: str) -> str:
        return f"{self.greeting}, {name}"


def test_results_hold_queuerpy_list_form_and_result_the_value(make_queuer):
    q = make_queuer()
    for fn in (triple, nothing, boom):
        q.add_task(fn)
    q.start()
    three = q.wait_for_job_finished(q.add_job(triple, 1).rid, 10)
    none = q.wait_for_job_finished(q.add_job(nothing).rid, 10)
    failed = q.wait_for_job_finished(q.add_job(boom).rid, 10)
    assert (three.results, three.result) == ([3], 3)
    assert three.results[0] == 3
    assert (none.results, none.result) == ([None], None)
    assert failed.status == JobStatus.FAILED and failed.results == []
    q.stop()
    cancelled = q.cancel_job(q.add_job(triple, 2).rid)
    assert cancelled.status == JobStatus.CANCELLED and cancelled.results == []


def test_the_constructor_registers_a_ready_worker_that_claims_nothing(make_queuer, db_config):
    producer = make_queuer(OnError(max_retries=2, timeout=5))
    producer.add_task(triple)
    worker = producer.worker
    assert isinstance(worker, Worker) and worker.status == WorkerStatus.READY
    assert worker.available_tasks and "triple" in worker.available_tasks
    assert worker.options == OnError(max_retries=2, timeout=5)
    assert producer.get_worker(worker.rid).available_tasks == worker.available_tasks

    def hourly(start, count):
        return start

    returned = producer.add_next_interval_func(hourly)
    assert isinstance(returned, Worker) and returned.available_next_interval_funcs == ["hourly"]

    job = producer.add_job(triple, 5)
    # A READY worker that never heartbeats is not declared dead by a running master.
    sql(db_config, "UPDATE {schema}.worker SET heartbeat_at = now() - interval '1 hour' WHERE rid = %s",
        (worker.rid,))
    other = make_queuer(name="other")
    other.add_task(nothing)
    other.start()
    wait_until(lambda: count(db_config, "SELECT count(*) FROM {schema}.master WHERE worker_rid = %s",
                             (other.worker.rid,)) == 1, message="the other worker becomes master")
    wait_until(lambda: other.wait_for_job_finished(other.add_job(nothing).rid, 10), message="a master tick")
    assert producer.get_worker(worker.rid).status == WorkerStatus.READY
    assert producer.get_job(job.rid).status == JobStatus.QUEUED  # nobody claimed it


def test_bound_methods_are_tasks(make_queuer):
    greeter = Greeter("hello")
    q = make_queuer()
    task = q.add_task(greeter.greet)
    assert task.name == "Greeter.greet" and task.task == greeter.greet
    assert q.add_task(greeter.greet) == task  # the same method again is harmless
    q.start()
    job = q.add_job(greeter.greet, "ada")
    assert q.wait_for_job_finished(job.rid, 10).results == ["hello, ada"]


def test_signatures_and_aliases(make_queuer, db_config):
    @queuer.task_with_name("module-level")
    def module_level():
        return "m"

    q = make_queuer()

    @q.task_with_name("named")
    def named():
        return "n"

    @q.task()
    def bare():
        return "b"

    assert {"module-level", "named", "bare"} <= set(q.tasks)
    assert q.tasks["named"].task is named
    inserts = []
    q.listen_for_job_insert(notify_function=lambda job: inserts.append(job.rid))
    q.listen_for_job_update(notify_function=lambda job: None)
    q.listen_for_job_delete(notify_function=lambda job: None)
    rids = [q.add_job("named").rid for _ in range(5)]
    wait_until(lambda: len(inserts) == 5, message="insert events")

    # queuerPy's keyset pages: newest first, the next page after the last id seen.
    first = q.get_jobs(0, 2)
    second = q.get_jobs(first[-1].id, 2)
    third = q.get_jobs(last_id=second[-1].id, entries=2)
    assert [j.rid for j in first + second + third] == rids[::-1]
    assert q.get_jobs_by_worker_rid(q.worker.rid, 0, 10) == []
    q.start()
    for rid in rids:
        q.wait_for_job_finished(rid, 10)
    assert [j.rid for j in q.get_jobs_ended(0, 5)] == rids[::-1]
    assert len(q.get_jobs_ended(0, 100)) == 5

    config = DatabaseConfiguration(
        host=db_config.host, port=db_config.port, database=db_config.database, username=db_config.username,
        password=db_config.password, schema=db_config.schema, with_table_drop=True, with_timescale=True,
    )
    fresh = new_queuer_with_db("fresh", 1, None, config)
    try:
        assert count(db_config, "SELECT count(*) FROM {schema}.job_archive") == 0  # tables were dropped
    finally:
        fresh.stop()


def test_errors_and_returns_match_queuerpy(make_queuer):
    import uuid

    q = make_queuer()
    q.add_task(triple)
    unknown = uuid.uuid4()
    with pytest.raises(QueuerError, match="Job not found"):
        q.get_job(unknown)
    with pytest.raises(QueuerError, match="Job not found"):
        q.cancel_job(unknown)
    with pytest.raises(QueuerError, match="Job not found in archive"):
        q.get_job_ended(unknown)
    with pytest.raises(QueuerError, match="Job not found in archive"):
        q.readd_job_from_archive(unknown)
    assert q.get_worker(unknown) is None
    with pytest.raises(QueuerError, match="not found"):
        q.stop_worker(unknown)
    with pytest.raises(QueuerError, match="not found"):
        q.stop_worker_gracefully(unknown)

    def triple_again(x):
        return x

    for register in (lambda: q.add_task_with_name(triple_again, "triple"),
                     lambda: q.add_next_interval_func_with_name(lambda s, c: s, "nif") and
                     q.add_next_interval_func_with_name(lambda s, c: c, "nif")):
        with pytest.raises(RuntimeError, match="already exists") as raised:
            register()
        assert isinstance(raised.value, QueuerError)

    for name in error_names:
        assert issubclass(getattr(queuer.errors, name), QueuerError), name


def test_stop_worker_shows_at_once_and_a_queuer_starts_again(make_queuer):
    q = make_queuer()
    q.add_task(triple)
    q.start()
    with pytest.raises(RuntimeError, match="already running"):
        q.start()
    other = make_queuer(name="other")
    other.add_task(triple)
    other.start()
    assert q.stop_worker_gracefully(other.worker.rid).status == WorkerStatus.STOPPING
    assert q.get_worker(other.worker.rid).status in (WorkerStatus.STOPPING, WorkerStatus.STOPPED)
    wait_until(lambda: not other.running, message="the other worker to stop")
    third = make_queuer(name="third")
    third.start()
    assert q.stop_worker(third.worker.rid).status == WorkerStatus.STOPPED
    wait_until(lambda: not third.running, message="the third worker to stop")

    rid = q.worker.rid
    q.stop()
    assert q.get_worker(rid).status == WorkerStatus.STOPPED
    q.start()  # as in queuerPy: the same worker runs again
    assert q.worker.rid == rid and q.get_worker(rid).status == WorkerStatus.RUNNING
    assert q.wait_for_job_finished(q.add_job(triple, 2).rid, 10).results == [6]


@pytest.mark.parametrize("graceful", [True, False])
def test_stopping_its_own_worker_shows_in_q_worker_at_once(make_queuer, graceful):
    """queuerPy code reads ``q.worker.status`` right after ``stop_worker(q.worker.rid)``."""
    q = make_queuer(name=f"self-stop-{graceful}")
    q.add_task(triple)
    q.start()
    expected = WorkerStatus.STOPPING if graceful else WorkerStatus.STOPPED
    (q.stop_worker_gracefully if graceful else q.stop_worker)(q.worker.rid)
    assert q.worker.status in (expected, WorkerStatus.STOPPED)
    wait_until(lambda: not q.running, message="the worker stops")
    assert q.worker.status == WorkerStatus.STOPPED


def test_queuerpy_cleanup_through_q_database(make_queuer):
    q = make_queuer(name="cleanup")
    q.add_task(triple)
    assert q.database  # queuerPy's "if queuer.database: ..."
    q.database.close()
    assert q.database.pool.idle_count == 0
    assert q.add_job(triple, 1).rid  # the connections open again when used
