"""Bad input: a clear exception naming the problem, and nothing written."""

from __future__ import annotations

import pytest

from queuer import (
    BatchJob,
    DatabaseUnreachableError,
    JobStatus,
    OnError,
    Options,
    Schedule,
    TaskNotRegisteredError,
    new_queuer_with_db,
)
from queuer.config.database import ConfigurationError, DatabaseConfiguration
from tests.support import count, sql


def add(a, b=0):
    return a + b


def not_registered():
    pass


def jobs_in(db_config) -> int:
    return count(db_config, "SELECT count(*) FROM {schema}.job")


def test_unregistered_callable(make_queuer, db_config):
    q = make_queuer()
    with pytest.raises(TaskNotRegisteredError, match="not_registered.*add_task"):
        q.add_job(not_registered)
    assert jobs_in(db_config) == 0


def test_non_json_argument_inserts_nothing(make_queuer, db_config):
    q = make_queuer()
    q.add_task(add)
    with pytest.raises(TypeError, match="positional argument of job 'add' is not JSON-serializable"):
        q.add_job(add, object())
    with pytest.raises(TypeError, match="keyword argument of job 'add' is not JSON-serializable"):
        q.add_job(add, 1, b={1, 2})
    with pytest.raises(TypeError, match="not JSON-serializable"):
        q.add_job(add, float("nan"))
    with pytest.raises(TypeError, match="batch item 1: .*not JSON-serializable"):
        q.add_jobs([BatchJob(task=add, parameters=[1]), BatchJob(task=add, parameters=[object()])])
    assert jobs_in(db_config) == 0


def test_unknown_status(make_queuer):
    q = make_queuer()
    with pytest.raises(ValueError, match="unknown job status 'DONE'.*QUEUED"):
        q.get_jobs(status="DONE")


@pytest.mark.parametrize("concurrency", [0, -1, 1.5, "4", True])
def test_bad_max_concurrency(db_config, concurrency):
    with pytest.raises(ValueError, match="max_concurrency must be a positive integer"):
        new_queuer_with_db("w", concurrency, None, db_config)


@pytest.mark.parametrize("schema", ["", "1abc", "bad-name", 'x"; DROP TABLE job; --', "a" * 49, "sp ace"])
def test_invalid_schema_name(db_config, schema):
    with pytest.raises(ConfigurationError, match="invalid schema name"):
        new_queuer_with_db("w", 1, None, db_config.with_schema(schema))


def test_unreachable_database_names_target_not_password():
    config = DatabaseConfiguration(
        host="127.0.0.1", port=1, database="nope", username="someone", password="s3cret pass", startup_wait=1
    )
    with pytest.raises(DatabaseUnreachableError) as info:
        new_queuer_with_db("w", 1, None, config)
    message = str(info.value)
    assert "127.0.0.1:1/nope" in message and "QUEUER_DB_HOST" in message
    assert "s3cret" not in message and "s3cret" not in repr(config)


def test_bad_options_are_rejected_when_built():
    with pytest.raises(ValueError, match="unknown retry_backoff 'sometimes'"):
        OnError(retry_backoff="sometimes")
    with pytest.raises(ValueError, match="max_retries must be an integer >= 0"):
        OnError(max_retries=-1)
    with pytest.raises(ValueError, match="priority must be an integer"):
        Options(priority="high")
    with pytest.raises(ValueError, match="needs interval or next_interval"):
        Schedule(max_count=3)


def test_bad_task_registration(make_queuer):
    q = make_queuer()
    with pytest.raises(TypeError, match="must be callable"):
        q.add_task("not a function")
    with pytest.raises(ValueError, match="cannot derive a task name"):
        q.add_task(lambda: None)
    q.add_task(add)

    def other(a):
        return a

    with pytest.raises(RuntimeError, match="Task already exists: add"):
        q.add_task_with_name(other, "add")
    with pytest.raises(ValueError, match="control characters"):
        q.add_task_with_name(other, "bad\nname")


def test_keyword_arguments_named_like_the_api_reach_the_task(make_queuer):
    def echo(**kwargs):
        return kwargs

    q = make_queuer()
    q.add_task(echo)
    q.start()
    job = q.add_job(echo, options=1, task=2, self=3)
    assert q.wait_for_job_finished(job.rid, 10).result == {"options": 1, "task": 2, "self": 3}
    job = q.add_job_with_options(Options(priority=1), echo, options="o")
    assert q.wait_for_job_finished(job.rid, 10).result == {"options": "o"}


def test_nul_and_lone_surrogates_in_keys_and_extra_are_our_value_errors(make_queuer, db_config):
    from tests.support import count

    with pytest.raises(ValueError, match="unique_key contains a NUL"):
        Options(unique_key="a\x00b")
    with pytest.raises(ValueError, match="serial_key contains a lone surrogate"):
        Options(serial_key="a\ud800")
    q = make_queuer()
    q.add_task(len)
    for extra in ({"k": "\x00"}, {"k": "\udc00"}):
        with pytest.raises(ValueError):
            q.add_job_with_options(Options(extra=extra), len, "x")
    assert count(db_config, "SELECT count(*) FROM {schema}.job") == 0


def test_an_empty_schema_variable_is_an_error():
    from queuer import ConfigurationError

    with pytest.raises(ConfigurationError, match="QUEUER_DB_SCHEMA is set but empty"):
        DatabaseConfiguration.from_env({"QUEUER_DB_SCHEMA": ""})


def test_arguments_that_do_not_fit_the_task_fail_at_once_other_type_errors_are_retried(make_queuer):
    calls = []

    def one_arg(x):
        calls.append(x)
        raise TypeError("raised inside the task")

    q = make_queuer(OnError(max_retries=2, retry_delay=0, timeout=None))
    q.add_task(one_arg)
    q.start()
    wrong = q.wait_for_job_finished(q.add_job(one_arg, 1, 2).rid, 10)
    assert wrong.status.value == "FAILED" and wrong.attempts == 1 and wrong.failures == 1
    inside = q.wait_for_job_finished(q.add_job(one_arg, 1).rid, 10)
    assert inside.status.value == "FAILED" and inside.attempts == 3 and inside.failures == 3
    assert calls == [1, 1, 1]


def test_the_longest_names_and_keys_end_in_large_batches(make_queuer):
    # Every ended job is announced with its task name and serial key: the
    # announcements of one batch must fit PostgreSQL's 8000-byte NOTIFY limit.
    name = "t" * 200
    q = make_queuer(max_concurrency=8)
    q.add_task_with_name(lambda i: i, name)
    q.start()
    with pytest.raises(ValueError, match="longer than 500 characters"):
        Options(serial_key="k" * 501)
    rids = q.add_jobs([BatchJob(name, [i], options=Options(serial_key=f"{i:03d}" + "é" * 497)) for i in range(300)])
    assert [q.wait_for_job_finished(rid, 30).result for rid in rids] == list(range(300))


def test_a_result_over_the_payload_limit_fails_its_job_clearly(make_queuer):
    from queuer import JobStatus, WorkerSettings
    from tests.support import FAST

    q = make_queuer(OnError(max_retries=3, retry_delay=0), settings=WorkerSettings(**{
        **FAST.__dict__, "max_payload_bytes": 1_000}))
    q.add_task_with_name(lambda n: "x" * n, "sized")
    q.start()
    small, big = q.add_job("sized", 10), q.add_job("sized", 2_000)
    assert q.wait_for_job_finished(small.rid, 10).result == "x" * 10
    failed = q.wait_for_job_finished(big.rid, 10)
    assert failed.status == JobStatus.FAILED and failed.attempts == 1  # no retry: it would fail again
    assert "2,002 bytes of JSON, over the limit of 1,000" in failed.error


def test_serial_keys_of_control_characters_end_in_one_batch(make_queuer):
    # A control character is escaped as \u00XX (6 bytes) in a notification: a
    # 500-character key makes a 3 KB event, and chunks must still fit 8000 bytes.
    from queuer.model.worker import WorkerStatus
    from queuer.testing import drain

    q = make_queuer()
    q.add_task_with_name(lambda: None, "k")
    lengths = [342, 500, 500, 397]
    # Events go out in an order of PostgreSQL's choosing: try the keys in several orders.
    for order in [lengths[i:] + lengths[:i] for i in range(4)] + [lengths[::-1]]:
        for i, length in enumerate(order):
            q.add_job_with_options(Options(serial_key=chr(65 + i) + "\x01" * (length - 1)), "k")
        ended = drain(q)  # one claim, one record_outcomes: every end and every freed key in it
        assert [job.status.value for job in ended] == ["SUCCEEDED"] * 4
    assert q.worker.status == WorkerStatus.READY


def test_a_batch_naming_many_long_tasks_and_a_shutdown_giving_back_many_jobs_notify_in_chunks(make_queuer):
    from queuer import JobStatus
    from queuer.model.worker import WorkerStatus

    q = make_queuer()
    names = [f"{i:03d}" + "\U0001d11e" * 197 for i in range(12)]  # 4 bytes a character
    for name in names:
        q.add_task_with_name(lambda: None, name)
    rids = q.add_jobs([BatchJob(name) for name in names for _ in range(10)])
    assert len(rids) == 120
    q.worker_db.set_status(q.worker.rid, WorkerStatus.RUNNING)
    claimed = q.attempt_db.claim(q.worker.rid, names, 120, 1, None, 3)
    assert len(claimed) == 120
    held = [(job.id, job.attempt) for job in claimed]
    assert q.attempt_db.requeue_abandoned(q.worker.rid, held[:60]) == 60
    assert q.attempt_db.release(q.worker.rid, held[60:]) == 60
    assert len(q.job_db.get_jobs(status=JobStatus.QUEUED, limit=500)) == 120


def _deep(levels: int) -> list:
    value: list = []
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize("levels", [101, 988, 3000])
def test_arguments_nested_too_deep_are_refused_and_nothing_is_written(make_queuer, db_config, levels):
    q = make_queuer()
    q.add_task_with_name(lambda *a, **k: None, "plain")
    with pytest.raises(ValueError, match="more than 100 levels deep"):
        q.add_job("plain", _deep(levels))
    with pytest.raises(ValueError, match="more than 100 levels deep"):
        q.add_job("plain", nested=_deep(levels))
    assert q.add_job("plain", _deep(98)).rid  # 100 levels with the argument list: within the limit
    assert count(db_config, "SELECT count(*) FROM {schema}.job") == 1


@pytest.mark.parametrize("stored", [
    "[" * 2000 + "]" * 2000,                 # deeper than any Python JSON reader recurses
    "[" + "9" * 5000 + "]",                  # an integer past Python's digit limit
], ids=["2000-deep", "5000-digit-integer"])
def test_an_undecodable_row_written_by_sql_fails_alone_and_its_batchmates_run(make_queuer, db_config, stored):
    q = make_queuer(max_concurrency=4)
    q.add_task_with_name(lambda i=None: i, "plain")
    rids = [q.add_job("plain", i).rid for i in range(20)]
    bad = q.add_job("plain", 0).rid
    sql(db_config, "UPDATE {schema}.job SET parameters = %s::jsonb WHERE rid = %s", (stored, bad))
    q.start()
    done = [q.wait_for_job_finished(rid, timeout_seconds=30) for rid in rids]
    assert [job.status for job in done] == [JobStatus.SUCCEEDED] * 20
    failed = q.wait_for_job_finished(bad, timeout_seconds=30)
    assert failed.status == JobStatus.FAILED
    assert "InvalidJobError" in failed.error and "cannot be decoded" in failed.error
    assert failed.attempts == 1  # failed at once, not retried or re-released
    assert failed.undecodable and failed.parameters == []  # readable, and it says why
    assert q.wait_for_job_finished(q.add_job("plain", 1).rid, timeout_seconds=30).status == JobStatus.SUCCEEDED


def test_an_integer_past_pythons_digit_limit_is_refused(make_queuer, db_config):
    q = make_queuer()
    q.add_task_with_name(lambda *a: None, "plain")
    with pytest.raises(ValueError, match="integer of more than 4,300 digits"):
        q.add_job("plain", 10 ** 5000)
    assert count(db_config, "SELECT count(*) FROM {schema}.job") == 0


def test_a_huge_error_text_is_stored_cut_with_a_marker(make_queuer):
    q = make_queuer()

    def shout() -> None:
        raise RuntimeError("A" * 2_000_000)

    q.add_task(shout)
    q.start()
    failed = q.wait_for_job_finished(q.add_job(shout).rid, timeout_seconds=30)
    assert failed.status == JobStatus.FAILED
    assert len(failed.error) < 70_000 and "characters cut" in failed.error
    assert failed.error.startswith("RuntimeError: AAAA") and "Traceback" not in failed.error[:100]


@pytest.mark.parametrize("result", ["deep", "huge-int"])
def test_a_result_past_the_limits_fails_its_job_not_the_worker(make_queuer, result):
    q = make_queuer()
    q.add_task_with_name(lambda: _deep(150) if result == "deep" else 10 ** 5000, "answer")
    q.add_task_with_name(lambda: "fine", "after")
    q.start()
    failed = q.wait_for_job_finished(q.add_job("answer").rid, timeout_seconds=30)
    assert failed.status == JobStatus.FAILED and failed.attempts == 1
    assert ("levels deep" if result == "deep" else "4,300 digits") in failed.error
    assert q.wait_for_job_finished(q.add_job("after").rid, timeout_seconds=30).result == "fine"
