"""The shop's tests: queuer's pytest plugin gives a throwaway PostgreSQL (fixture
``queuer_db``); ``queuer.testing`` gives the helpers. No conftest.py is needed."""

from __future__ import annotations

import pytest
from shop.tasks import SENT, charge, place_order, send_receipt

from queuer import JobStatus, new_queuer
from queuer.testing import assert_enqueued, drain, job_context, refute_enqueued, run_task, run_task_in


@pytest.fixture
def q(queuer_db):
    with new_queuer("shop-test", 2) as q:  # QUEUER_DB_* point at this test's schema
        yield q


def test_placing_an_order_enqueues_a_charge_and_a_receipt(q):
    place_order(q, 42, "ada@example.com", 1999)
    assert_enqueued(q, charge, args=[42, 1999])
    assert_enqueued(q, send_receipt, kwargs={"email": "ada@example.com"})
    refute_enqueued(q, send_receipt, kwargs={"email": "bob@example.com"})


def test_a_wrong_expectation_says_what_is_there(q):
    place_order(q, 7, "ada@example.com", 500)
    with pytest.raises(AssertionError) as failure:
        assert_enqueued(q, charge, args=[7, 999])
    assert "[7, 500]" in str(failure.value)


def test_draining_runs_every_job_and_returns_them(q):
    place_order(q, 1, "ada@example.com", 100)
    place_order(q, 2, "bob@example.com", 0)  # fails: nothing to charge
    ended = drain(q, with_scheduled=True)  # retries are scheduled a moment later: run them now
    by_task = {(job.task_name, job.status) for job in ended}
    assert ("send_receipt", JobStatus.SUCCEEDED) in by_task
    assert ("charge", JobStatus.FAILED) in by_task
    failed = next(job for job in ended if job.status == JobStatus.FAILED)
    assert "nothing to charge" in failed.error
    refute_enqueued(q, charge)
    assert {"ada@example.com", "bob@example.com"} <= set(SENT)


def test_a_task_runs_as_the_worker_would_run_it():
    assert run_task(charge, 5, 250) == {"order": 5, "charged": 250, "attempt": 1}
    with pytest.raises(ValueError, match="nothing to charge"):
        run_task(charge, 5, 0)


def test_a_cancelled_job_sends_nothing():
    context = job_context()
    context.cancel("the customer left")
    assert run_task_in(context, send_receipt, 9, "eve@example.com") == "not sent"
