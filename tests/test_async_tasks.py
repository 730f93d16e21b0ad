"""``async def`` tasks obey cancel and timeout: the coroutine is interrupted at its next await."""

from __future__ import annotations

import asyncio
import threading
import time

from queuer import BatchJob, JobStatus, OnError, Options

from tests.support import wait_until

ASYNC_SLEEP = 10.0  # far longer than any test waits: an uninterrupted coroutine fails the test


def _async_sleeper(started: threading.Event, interrupted: threading.Event):
    async def sleeper() -> str:
        started.set()
        try:
            await asyncio.sleep(ASYNC_SLEEP)
        except asyncio.CancelledError:
            interrupted.set()
            raise
        return "slept"

    return sleeper


def test_cancel_job_interrupts_an_async_task_and_frees_its_thread(make_queuer):
    started, interrupted = threading.Event(), threading.Event()
    sleeper = _async_sleeper(started, interrupted)

    def next_one() -> str:
        return "ran on the freed thread"

    q = make_queuer(max_concurrency=1)
    q.add_task(sleeper)
    q.add_task(next_one)
    q.start()
    job = q.add_job(sleeper)
    assert started.wait(10)
    follower = q.add_job(next_one)

    asked = time.monotonic()
    assert q.cancel_job(job.rid).status == JobStatus.CANCELLED
    assert interrupted.wait(1), "the coroutine never saw CancelledError"
    took = time.monotonic() - asked
    print(f"\nasync task interrupted {took * 1000:.1f} ms after cancel_job")
    assert took < 0.1, f"the coroutine was interrupted {took * 1000:.0f} ms after cancel_job"
    # One job thread only: the next job runs only if the cancelled coroutine let it go.
    done = q.wait_for_job_finished(follower.rid, 5)
    assert (done.status, done.result) == (JobStatus.SUCCEEDED, "ran on the freed thread")
    assert q.get_job_ended(job.rid).status == JobStatus.CANCELLED


def test_timeout_interrupts_an_async_task_at_its_deadline(make_queuer):
    started, interrupted = threading.Event(), threading.Event()
    sleeper = _async_sleeper(started, interrupted)

    def next_one() -> str:
        return "next"

    q = make_queuer(max_concurrency=1)
    q.add_task(sleeper)
    q.add_task(next_one)
    q.start()
    job = q.add_job_with_options(Options(on_error=OnError(timeout=0.5, max_retries=0)), sleeper)
    assert started.wait(10)
    began = time.monotonic()
    follower = q.add_job(next_one)
    assert interrupted.wait(5), "the coroutine never saw CancelledError"
    late = time.monotonic() - began - 0.5
    print(f"\nasync task interrupted {late * 1000:.1f} ms after its 0.5 s deadline")
    assert late < 0.1, f"interrupted {late * 1000:.0f} ms after the deadline"
    done = q.wait_for_job_finished(job.rid, 5)
    assert done.status == JobStatus.FAILED and "TimeoutError" in done.error and done.result is None
    assert q.wait_for_job_finished(follower.rid, 5).result == "next"
    wait_until(lambda: q._runtime.dispatcher.busy() == 0, message="the job thread is free")


def test_an_async_task_that_returns_normally_keeps_working(make_queuer):
    async def add(a: int, b: int) -> int:
        await asyncio.sleep(0)
        return a + b

    q = make_queuer()
    q.add_task(add)
    q.start()
    rids = q.add_jobs([BatchJob(add, [i, i]) for i in range(20)])
    results = [q.wait_for_job_finished(rid, 10).result for rid in rids]
    assert results == [2 * i for i in range(20)]
