"""Suspects run in a process of their own: what comes back, what a crash costs, what kills it.

A job becomes a suspect when it was running beside other jobs as its worker died
(see test_crashes.py for that, with real kills). Here the rows are marked
suspect by SQL, and an ordinary worker of this process runs them.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import subprocess
import threading
import time

import psycopg
import pytest

import queuer
from queuer import JobStatus, OnError, Options
from tests.support import count, process_gone, sql, wait_until

pytestmark = [pytest.mark.reliability, pytest.mark.crash]


def _suspect(db_config, *rids) -> None:
    sql(db_config, "UPDATE {schema}.job SET suspect = true WHERE rid = ANY(%s::uuid[])", ([str(r) for r in rids],))


def test_a_suspect_runs_in_a_process_of_its_own_and_its_result_comes_back(make_queuer, db_config):
    def where(size: int) -> dict[str, object]:
        # A task that adds a job uses the worker's Queuer: in the child, on connections of its own.
        follow_up = q.add_job(innocent, size).rid if size > 1000 else None
        return {"pid": os.getpid(), "padding": "x" * size, "follow_up": str(follow_up)}

    def innocent(i: int) -> int:
        return i

    q = make_queuer()
    q.add_task(where)
    q.add_task(innocent)
    # 300 kB of result: more than a pipe holds, so the worker reads while the child writes.
    suspect, plain = q.add_job(where, 300_000), q.add_job(where, 10)
    _suspect(db_config, suspect.rid)
    q.start()
    isolated = q.wait_for_job_finished(suspect.rid, 20)
    beside = q.wait_for_job_finished(plain.rid, 20)
    assert isolated.status == JobStatus.SUCCEEDED and len(isolated.result["padding"]) == 300_000
    assert isolated.result["pid"] != os.getpid(), "the suspect ran in a child"
    assert beside.result["pid"] == os.getpid(), "an ordinary job runs on the worker's threads"
    assert q.wait_for_job_finished(isolated.result["follow_up"], 20).result == 300_000


def test_a_suspect_that_raises_fails_and_retries_as_any_job(make_queuer, db_config):
    def flaky() -> str:
        if queuer.current_job().attempt == 1:
            raise ValueError("first time unlucky")
        return "ok"

    q = make_queuer(OnError(max_retries=1))
    q.add_task(flaky)
    job = q.add_job(flaky)
    _suspect(db_config, job.rid)
    q.start()
    done = q.wait_for_job_finished(job.rid, 20)
    assert (done.status, done.result, done.failures, done.crashes) == (JobStatus.SUCCEEDED, "ok", 1, 0)


def test_an_async_suspect_and_its_steps_run_in_the_child(make_queuer, db_config):
    async def fetch(n: int) -> list[int]:
        first = queuer.current_job().step("first", lambda: n * 2)
        await asyncio.sleep(0.01)
        return [first, os.getpid()]

    q = make_queuer()
    q.add_task(fetch)
    job = q.add_job(fetch, 21)
    _suspect(db_config, job.rid)
    q.start()
    done = q.wait_for_job_finished(job.rid, 20)
    assert done.status == JobStatus.SUCCEEDED and done.result[0] == 42 and done.result[1] != os.getpid()
    steps = sql(db_config, "SELECT steps FROM {schema}.job_archive WHERE rid = %s", (job.rid,))[0][0]
    assert steps == {"first": {"v": 42}}, "the step was stored from the child's own connection"


def test_a_suspect_past_its_timeout_is_killed_with_what_it_started_and_its_thread_freed(make_queuer, db_config,
                                                                                        tmp_path):
    def stubborn() -> None:
        time.sleep(120)  # never looks at its cancel flag: only killing its process ends it

    def report_pids(path: str) -> None:
        helper = subprocess.Popen(["sleep", "120"])  # a program the task runs goes with it
        (tmp_path / path).write_text(f"{os.getpid()} {helper.pid}")
        time.sleep(120)

    q = make_queuer(OnError(timeout=1.0, max_retries=0), max_concurrency=1)
    q.add_task(stubborn)
    q.add_task(report_pids)
    job = q.add_job(report_pids, "pids")
    after = q.add_job(stubborn)
    _suspect(db_config, job.rid)
    q.start()
    began = time.monotonic()
    done = q.wait_for_job_finished(job.rid, 20)
    assert done.status == JobStatus.FAILED and done.error.startswith("TimeoutError")
    pids = [int(p) for p in wait_until(lambda: (tmp_path / "pids").exists() and (tmp_path / "pids").read_text(),
                                       timeout=5).split()]
    wait_until(lambda: all(process_gone(pid) for pid in pids), timeout=5,
               message="the suspect's process and the program it ran killed")
    # The one thread is free again: the next job starts (and times out) as usual.
    assert q.wait_for_job_finished(after.rid, 20).error.startswith("TimeoutError")
    assert time.monotonic() - began < 6


def test_the_worker_s_event_loops_keep_working_after_a_suspect_s_fork(make_queuer, db_config):
    """A forked child drops the other threads' locals; the loops they held must not be closed there, or
    the epoll instance they share with the worker's loops would lose their wake-up descriptors."""

    async def hold(seconds: float) -> float:
        began = time.monotonic()
        await asyncio.to_thread(time.sleep, seconds)  # its result comes back through the loop's wake-up
        return time.monotonic() - began

    def where() -> int:
        gc.collect()  # as a task that allocates much would have it: what is garbage here is collected
        return os.getpid()

    def pause(seconds: float) -> None:
        time.sleep(seconds)

    q = make_queuer(OnError(timeout=1.0, max_retries=0), max_concurrency=2)
    q.add_task(hold)
    q.add_task(where)
    q.add_task(pause)
    q.start()
    # Both job threads make their event loop, then run a plain job: their loops are then held by
    # the threads' locals alone.
    for task in (hold, pause):
        jobs = [q.add_job(task, 0.3), q.add_job(task, 0.3)]
        assert {q.wait_for_job_finished(j.rid, 20).status for j in jobs} == {JobStatus.SUCCEEDED}
    # Made a suspect as it is added, unseen by the running worker: with no rescue's notification, the
    # poller looks for suspects every few seconds anyway.
    with psycopg.connect(**db_config.connect_kwargs()) as conn:
        suspect = q.add_job_tx(conn, where)
        conn.execute(f'UPDATE "{db_config.schema}".job SET suspect = true WHERE rid = %s', (suspect.rid,))
    assert q.wait_for_job_finished(suspect.rid, 20).result != os.getpid()
    for _ in range(3):
        took = [q.wait_for_job_finished(j.rid, 20).result for j in [q.add_job(hold, 0.2), q.add_job(hold, 0.2)]]
        assert all(t < 0.9 for t in took), took


def test_a_forked_child_is_not_the_worker(make_queuer):
    q = make_queuer()
    q.add_task(lambda: None, "noop")
    q.start()
    runtime = q._runtime
    pid = os.fork()
    if pid == 0:  # a stop asked of the worker in a child must stop nothing of the parent's
        try:
            runtime.stop_requested(graceful=False)
            runtime.stop(timeout=1)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert q.running and q.get_worker(q.worker.rid).status.value == "RUNNING"


def test_a_suspect_runs_with_a_descriptor_numbered_past_1024(make_queuer, db_config):
    def where() -> int:
        return os.getpid()

    opened = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]  # the pipe's number is past select()'s reach
    try:
        q = make_queuer()
        q.add_task(where)
        job = q.add_job(where)
        _suspect(db_config, job.rid)
        q.start()
        assert q.wait_for_job_finished(job.rid, 20).result != os.getpid()
    finally:
        for fd in opened:
            os.close(fd)


@pytest.mark.parametrize("how, says", [
    ("segfault", "killed by SIGSEGV"),
    ("exit", "exited with status 3"),
])
def test_a_suspect_that_kills_its_process_is_charged_each_time_and_the_worker_goes_on(make_queuer, db_config,
                                                                                       how, says):
    def poison(how: str) -> None:
        if how == "segfault":
            os.kill(os.getpid(), signal.SIGSEGV)
        os._exit(3)

    def innocent(i: int) -> int:
        return i

    q = make_queuer()
    q.add_task(poison)
    q.add_task(innocent)
    job = q.add_job_with_options(Options(crash_budget=3), poison, how)
    _suspect(db_config, job.rid)
    q.start()
    done = q.wait_for_job_finished(job.rid, 30)
    assert (done.status, done.crashes, done.rescues) == (JobStatus.FAILED, 3, 3)
    assert "CrashBudgetExceeded: the job crashed 3 times while it ran alone" in done.error and says in done.error
    assert q.running, "the worker went on"
    assert q.wait_for_job_finished(q.add_job(innocent, 5).rid, 20).result == 5
    assert count(db_config, "SELECT count(*) FROM {schema}.job") == 0


def test_a_suspect_logs_and_prints_while_other_threads_hold_the_stream_it_shares(make_queuer, db_config):
    """A buffered stream's lock is not reset at a fork: a thread writing to it at that moment would leave
    it held in the child for good. The child writes through streams of its own."""
    read_end, write_end = os.pipe()
    stream = os.fdopen(write_end, "w", buffering=1)
    handler = logging.StreamHandler(stream)
    noisy = logging.getLogger("queuer.test.noisy")
    noisy.addHandler(handler)
    noisy.propagate = False
    stop = threading.Event()

    def slow_reader() -> None:  # a log collector that keeps up, barely: writers often wait on the pipe
        while os.read(read_end, 512):
            time.sleep(0.001)

    def chatter() -> None:
        while not stop.is_set():
            noisy.warning("x" * 400)

    def talkative(i: int) -> int:
        for _ in range(20):
            noisy.warning("from the suspect %d", i)
        print("printed by suspect", i, flush=True)
        return i

    threads = [threading.Thread(target=slow_reader, daemon=True)] + [
        threading.Thread(target=chatter, daemon=True) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        q = make_queuer(max_concurrency=4)
        q.add_task(talkative)
        jobs = [q.add_job(talkative, i) for i in range(12)]
        _suspect(db_config, *(job.rid for job in jobs))
        q.start()
        done = [q.wait_for_job_finished(job.rid, 30) for job in jobs]
        assert [job.result for job in done] == list(range(12))
        assert max(job.ended_at - job.started_at for job in done).total_seconds() < 5
    finally:
        stop.set()
        for thread in threads[1:]:
            thread.join(5)
        noisy.removeHandler(handler)
        stream.close()  # the reader sees EOF and ends
