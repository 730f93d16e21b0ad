"""The async client (AsyncQueuer) against a real PostgreSQL; coroutines run with asyncio.run."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import psycopg
import pytest

import queuer
from queuer import BatchJob, JobAlreadyEndedError, JobNotFoundError, JobStatus, JobWaitTimeoutError, new_async_queuer
from queuer.database.connection import connect
from tests.support import ROOT, count

JOBS = 1000


def add(a, b=0):
    return a + b


def test_add_get_and_wait_with_a_sync_worker(make_queuer, db_config):
    q = make_queuer()
    q.add_task(add)
    q.start()

    async def main():
        async with await new_async_queuer("api", db_config=db_config) as aq:
            aq.add_task(add)
            job = await aq.add_job(add, 2, b=3)
            assert isinstance(job, queuer.Job) and job.task_name == "add"
            assert (await aq.get_job(job.rid)).rid == job.rid
            started = time.monotonic()
            done = await aq.wait_for_job_finished(job.rid, timeout_seconds=10)
            waited = time.monotonic() - started
            assert done.status == JobStatus.SUCCEEDED and done.result == 5
            assert (await aq.get_job(str(job.rid))).status == JobStatus.SUCCEEDED
            return waited

    # The archive is re-read every 5 s: done well before means the NOTIFY woke the waiter.
    assert asyncio.run(main()) < 2.0


def test_errors_are_the_sync_clients(db_config):
    async def main():
        aq = await new_async_queuer("api", db_config=db_config)
        try:
            with pytest.raises(JobNotFoundError):
                await aq.get_job(uuid.uuid4())
            with pytest.raises(JobNotFoundError):
                await aq.wait_for_job_finished(uuid.uuid4(), timeout_seconds=0.1)
            job = await aq.add_job("nobody-runs-this", 1)
            with pytest.raises(JobWaitTimeoutError, match="still QUEUED"):
                await aq.wait_for_job_finished(job.rid, timeout_seconds=0.3)
            with pytest.raises(queuer.TaskNotRegisteredError):
                await aq.add_job(add, 1)  # a function nobody registered
            with pytest.raises(TypeError):
                await aq.add_job("t", object())
        finally:
            await aq.close()

    asyncio.run(main())


def test_add_jobs_by_copy_and_get_jobs(db_config):
    async def main():
        async with await new_async_queuer("api", db_config=db_config) as aq:
            rids = await aq.add_jobs([BatchJob(task="batch", parameters=[i]) for i in range(2500)])
            assert len(rids) == 2500 and len(set(rids)) == 2500
            page = await aq.get_jobs(status=JobStatus.QUEUED, limit=10, offset=5)
            assert len(page) == 10 and all(j.task_name == "batch" for j in page)
            assert [j.parameters for j in page] == [[i] for i in range(5, 15)]
            assert len(await aq.get_jobs(task_name="batch", limit=3000)) == 2500

    asyncio.run(main())
    assert count(db_config, "SELECT count(*) FROM {schema}.job") == 2500


def test_add_job_tx_rolls_back_and_commits_with_the_callers_transaction(db_config):
    async def main():
        async with await new_async_queuer("api", db_config=db_config) as aq:
            conn = await psycopg.AsyncConnection.connect(**db_config.connect_kwargs())
            try:
                async with conn.transaction(force_rollback=True):
                    lost = await aq.add_job_tx(conn, "tx-task", 1)
                kept = None
                async with conn.transaction():
                    kept = await aq.add_job_tx(conn, "tx-task", 2)
            finally:
                await conn.close()
            with pytest.raises(JobNotFoundError):
                await aq.get_job(lost.rid)
            assert (await aq.get_job(kept.rid)).parameters == [2]
            with pytest.raises(TypeError):
                await aq.add_job_tx(None, "tx-task")  # type: ignore[arg-type]

    asyncio.run(main())
    assert count(db_config, "SELECT count(*) FROM {schema}.job") == 1


def test_add_jobs_tx_is_all_or_none_with_the_callers_transaction(db_config):
    async def main():
        async with await new_async_queuer("api", db_config=db_config) as aq:
            conn = await psycopg.AsyncConnection.connect(**db_config.connect_kwargs())
            try:
                async with conn.transaction(force_rollback=True):
                    lost = await aq.add_jobs_tx(conn, [BatchJob(task="tx-batch", parameters=[i]) for i in range(50)])
                async with conn.transaction():
                    kept = await aq.add_jobs_tx(conn, [BatchJob(task="tx-batch", parameters=[i]) for i in range(3)])
                    await conn.execute("SELECT 1")  # the caller's transaction goes on after the batch
            finally:
                await conn.close()
            assert len(lost) == 50 and len(kept) == 3
            assert [(await aq.get_job(rid)).parameters for rid in kept] == [[0], [1], [2]]
            # The first statement of psycopg's implicit transaction: rolled back with it.
            conn = await psycopg.AsyncConnection.connect(**db_config.connect_kwargs())
            try:
                await aq.add_jobs_tx(conn, [BatchJob(task="tx-batch", parameters=[7])])
                await conn.rollback()
            finally:
                await conn.close()

    asyncio.run(main())
    assert count(db_config, "SELECT count(*) FROM {schema}.job") == 3


def test_cancel_jobs_and_get_job_ended(db_config):
    async def main():
        async with await new_async_queuer("api", db_config=db_config) as aq:
            rids = await aq.add_jobs([BatchJob(task="cancel-us", parameters=[i]) for i in range(4)])
            with pytest.raises(JobNotFoundError):
                await aq.get_job_ended(rids[0])  # not ended yet
            cancelled = await aq.cancel_jobs([rids[0], str(rids[1]), uuid.uuid4()])
            assert {job.rid for job in cancelled} == set(rids[:2])
            assert (await aq.get_job_ended(rids[0])).status == JobStatus.CANCELLED
            assert await aq.cancel_jobs([rids[0]]) == []  # ended: skipped, not an error
            with pytest.raises(TypeError):
                await aq.cancel_jobs(rids[2])  # type: ignore[arg-type]

    asyncio.run(main())


def test_cancel_job(db_config):
    async def main():
        async with await new_async_queuer("api", db_config=db_config) as aq:
            job = await aq.add_job("cancel-me")
            cancelled = await aq.cancel_job(job.rid)
            assert cancelled.status == JobStatus.CANCELLED
            with pytest.raises(JobAlreadyEndedError):
                await aq.cancel_job(job.rid)
            with pytest.raises(JobNotFoundError):
                await aq.cancel_job(uuid.uuid4())
            assert (await aq.wait_for_job_finished(job.rid, 1)).status == JobStatus.CANCELLED

    asyncio.run(main())


def test_events_yield_an_insert_and_an_end(make_queuer, db_config):
    q = make_queuer()
    q.add_task(add)
    q.start()

    async def main():
        async with await new_async_queuer("api", db_config=db_config) as aq, aq.events() as events:
            job = await aq.add_job("add", 1, 1)
            seen = []

            async def collect():
                async for event in events:
                    if event.job.rid == job.rid:
                        seen.append((event.kind, event.job.status))
                        if event.kind == "end":
                            return

            await asyncio.wait_for(collect(), 10)
            return seen

    seen = asyncio.run(main())
    assert seen[0] == ("insert", JobStatus.QUEUED)
    assert seen[-1] == ("end", JobStatus.SUCCEEDED)


def test_a_stream_whose_consumer_falls_behind_keeps_the_newest_events_and_counts_the_rest(db_config, monkeypatch):
    from queuer.client import async_queuer

    monkeypatch.setattr(async_queuer, "EVENTS_BUFFERED", 5)

    async def main():
        async with await new_async_queuer("api", db_config=db_config) as aq, aq.events() as events:
            rids = [(await aq.add_job("nobody_runs_this", i)).rid for i in range(20)]
            # Every insert's notification has arrived once the last one has: wait for it, then read.
            deadline = time.monotonic() + 10
            while events.dropped < 15 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            kept = [(await asyncio.wait_for(events.__anext__(), 5)).job.rid for _ in range(5)]
            return rids, kept, events.dropped

    rids, kept, dropped = asyncio.run(main())
    assert dropped == 15 and kept == rids[-5:]


def test_a_thousand_concurrent_adds_never_stall_the_loop_and_outpace_sync_threads(make_queuer, db_config):
    q = make_queuer(name="sync-producer")

    def produce(n):
        for i in range(n):
            q.add_job("bench", i)

    threads = [threading.Thread(target=produce, args=(JOBS // 10,)) for _ in range(10)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sync_rate = JOBS / (time.perf_counter() - started)

    async def main():
        lags = []
        stop = asyncio.Event()

        async def monitor():
            loop = asyncio.get_running_loop()
            while not stop.is_set():
                due = loop.time() + 0.001
                await asyncio.sleep(0.001)
                lags.append(loop.time() - due)

        async with await new_async_queuer("async-producer", db_config=db_config) as aq:
            await aq.add_job("bench", -1)  # the first connection is opened outside the measure, as the sync one was
            watcher = asyncio.create_task(monitor())
            await asyncio.sleep(0.01)
            began = time.perf_counter()
            jobs = await asyncio.gather(*(aq.add_job("bench", i) for i in range(JOBS)))
            took = time.perf_counter() - began
            stop.set()
            await watcher
        assert len({job.rid for job in jobs}) == JOBS
        return JOBS / took, max(lags)

    async_rate, lag = asyncio.run(main())
    print(f"\nsync (10 threads): {sync_rate:,.0f} jobs/s; async (1,000 gathered): {async_rate:,.0f} jobs/s; "
          f"loop lag max {lag * 1000:.2f} ms")
    assert count(db_config, "SELECT count(*) FROM {schema}.job") == 2 * JOBS + 1
    assert lag < 0.005
    assert async_rate >= sync_rate * 0.9


def test_the_async_pool_opens_connections_as_the_sync_pool_does(db_config):
    async def main():
        async with await new_async_queuer("api", db_config=db_config) as aq:
            await aq.add_job("t")
            async with aq._db.connection() as conn:
                row = await (await conn.execute("SELECT current_setting('application_name') AS name")).fetchone()
                assert row["name"] == "queuer:api:async"
            assert aq._db.pool.opened <= db_config.pool_size

    asyncio.run(main())
    with connect(db_config) as conn:  # the sync side still works as before
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_the_fastapi_example_enqueues_in_a_request_and_awaits_the_result(make_queuer, db_config, monkeypatch):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from queuer.testing.server import environment

    for name, value in environment(db_config).items():
        monkeypatch.setenv(name, value)
    monkeypatch.syspath_prepend(str(ROOT))
    from example import fastapi_app

    worker = make_queuer()
    worker.add_task(lambda path, width=640: {"path": path, "width": width}, "resize")
    worker.start()
    with TestClient(fastapi_app.app) as client:
        answer = client.post("/resize", params={"path": "/images/a.png", "width": 64})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["result"] == {"path": "/images/a.png", "width": 64}
    assert worker.get_job_ended(body["rid"]).status is JobStatus.SUCCEEDED
