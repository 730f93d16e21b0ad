"""``async def`` tasks obey cancel and timeout: the coroutine is interrupted at its next await."""

from __future__ import annotations

import asyncio
import functools
import gc
import threading
import time
import warnings
from typing import Any

import queuer
from queuer import BatchJob, JobStatus, OnError, Options
from queuer.testing import run_task
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


def test_tasks_an_async_job_leaves_running_end_with_it(make_queuer):
    # Each job thread reuses one event loop: a task the coroutine started and left
    # running must not go on inside the next job (as the ended job).
    ticks: list = []

    async def spawner() -> str:
        async def forever() -> None:
            while True:
                ticks.append(queuer.current_job().rid)
                await asyncio.sleep(0.005)

        asyncio.get_running_loop().create_task(forever())
        await asyncio.sleep(0.03)
        return "spawned"

    async def later() -> str:
        await asyncio.sleep(0.2)
        return "later"

    q = make_queuer(max_concurrency=1)
    q.add_task(spawner)
    q.add_task(later)
    q.start()
    assert q.wait_for_job_finished(q.add_job(spawner).rid, 10).result == "spawned"
    seen = len(ticks)
    assert seen > 0
    assert q.wait_for_job_finished(q.add_job(later).rid, 10).result == "later"
    assert len(ticks) == seen, f"the ended job's task ran {len(ticks) - seen} more times during the next job"


def test_a_decorated_async_task_is_awaited(make_queuer):
    # A plain wrapper around an async def returns a coroutine: run it, as run_task does.
    async def double(n: int) -> int:
        await asyncio.sleep(0)
        return 2 * n

    @functools.wraps(double)
    def wrapped(n: int) -> Any:
        return double(n)

    q = make_queuer()
    q.add_task(wrapped)
    q.start()
    assert q.wait_for_job_finished(q.add_job(wrapped, 21).rid, 10).result == 42
    assert run_task(wrapped, 21) == 42


def test_job_threads_close_their_event_loops_when_the_worker_stops(make_queuer):
    async def one() -> int:
        await asyncio.sleep(0)
        return 1

    q = make_queuer(max_concurrency=2)
    q.add_task(one)
    q.start()
    assert [q.wait_for_job_finished(rid, 10).result for rid in q.add_jobs([BatchJob(one) for _ in range(4)])] == [1] * 4
    threads = q._runtime.dispatcher._threads
    q.stop()
    wait_until(lambda: not any(thread.is_alive() for thread in threads), message="job threads ended")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        gc.collect()
    assert not [w for w in caught if "event loop" in str(w.message)], [str(w.message) for w in caught]
