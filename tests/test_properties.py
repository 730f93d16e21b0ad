"""Property-based tests over the public API (hypothesis, a few hundred examples each)."""

from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from queuer import JobStatus
from queuer.config.database import ConfigurationError, DatabaseConfiguration
from queuer.model.cron import validate_cron
from tests.support import count, sql, wait_until

EXAMPLES = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# What JSON can carry and PostgreSQL's jsonb can store: no NUL, no lone surrogates.
text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | text,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(text, children, max_size=5),
    max_leaves=20,
)


@pytest.fixture
def producer(make_queuer):
    return make_queuer()


@EXAMPLES
@given(args=st.lists(json_values, max_size=4), kwargs=st.dictionaries(text, json_values, max_size=4))
def test_json_arguments_round_trip_exactly(producer, args, kwargs):
    job = producer.add_job("echo", *args, **kwargs)
    stored = producer.get_job(job.rid)
    assert stored.parameters == args and stored.parameters_keyed == kwargs


unserializable = st.sampled_from([object(), {1, 2}, b"bytes", complex(1, 2), float("nan"), float("inf")])


@EXAMPLES
@given(prefix=st.lists(json_values, max_size=3), bad=unserializable, nest=st.integers(0, 3))
def test_unserializable_values_are_rejected_before_anything_is_written(producer, db_config, prefix, bad, nest):
    value = bad
    for _ in range(nest):
        value = {"inner": [value]}
    with pytest.raises(TypeError, match="not JSON-serializable"):
        producer.add_job("echo", *prefix, value)
    assert count(db_config, "SELECT count(*) FROM {schema}.job") == 0


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=st.integers(1_000, 5_000))
def test_oversize_arguments_are_rejected(make_queuer, db_config, size):
    from queuer import WorkerSettings

    small = make_queuer(settings=WorkerSettings(max_payload_bytes=1_000))
    with pytest.raises(ValueError, match="over the limit of 1,000"):
        small.add_job("echo", "x" * size)
    assert count(db_config, "SELECT count(*) FROM {schema}.job") == 0


def test_nul_characters_and_lone_surrogates_are_rejected_clearly(producer, db_config):
    with pytest.raises(ValueError, match="NUL character"):
        producer.add_job("echo", "a\x00b")
    with pytest.raises(ValueError, match="lone surrogate"):
        producer.add_job("echo", key="\ud800")
    assert count(db_config, "SELECT count(*) FROM {schema}.job") == 0


@EXAMPLES
@given(name=st.text(max_size=60))
def test_task_names_are_rejected_or_stored_exactly(producer, name):
    try:
        job = producer.add_job(name)
    except ValueError:
        # names are 1 to 200 printable characters, no space at either end
        assert not name or len(name) > 200 or not name.isprintable() or name != name.strip()
        return
    assert producer.get_job(job.rid).task_name == name


@EXAMPLES
@given(name=st.text(max_size=60))
def test_schema_names_are_validated_identifiers(name):
    try:
        config = DatabaseConfiguration(schema=name)
    except ConfigurationError:
        return
    assert set(config.schema) <= set(string.ascii_letters + string.digits + "_")
    assert not config.schema[0].isdigit()


@EXAMPLES
@given(expression=st.text(max_size=40))
def test_cron_strings_are_rejected_or_valid(expression):
    try:
        validate_cron(expression)
    except ValueError as exc:
        assert "cron expression" in str(exc)
        return
    assert len(expression.split()) in (5, 6)


def test_a_row_edited_into_an_invalid_state_fails_alone(make_queuer, db_config):
    q = make_queuer()
    q.add_task_with_name(lambda *a, **k: "ran", "echo")
    q.start()
    bad_params = sql(db_config, "INSERT INTO {schema}.job (rid, task_name, parameters) "
                                "VALUES (gen_random_uuid(), 'echo', '\"not an array\"') RETURNING rid")[0][0]
    bad_options = sql(db_config, "INSERT INTO {schema}.job (rid, task_name, options) "
                                 "VALUES (gen_random_uuid(), 'echo', '{\"on_error\": {\"max_retries\": \"many\"}}') "
                                 "RETURNING rid")[0][0]
    for rid in (bad_params, bad_options):
        done = q.wait_for_job_finished(rid, 10)
        assert done.status == JobStatus.FAILED and "InvalidJobError" in done.error
    # The worker goes on.
    assert q.wait_for_job_finished(q.add_job("echo", 1).rid, 10).result == "ran"
    wait_until(lambda: q._runtime.poller.alive and q._runtime.completer.alive)
