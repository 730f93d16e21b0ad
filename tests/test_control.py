"""Control from inside and outside a job: snooze."""

from __future__ import annotations

import time
from dataclasses import replace

import queuer
from queuer import JobStatus, OnError, Snooze
from tests.support import FAST


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
