"""Several worker processes share one queue: every job is archived exactly once."""

from __future__ import annotations

import pytest

from queuer import BatchJob
from tests.support import count, start_worker_process, stop_process, wait_until


@pytest.mark.load
def test_two_worker_processes_share_5000_jobs_exactly_once(make_queuer, db_config):
    producer = make_queuer()
    workers = [start_worker_process(db_config, "--concurrency", "4") for _ in range(2)]
    try:
        wait_until(lambda: len(producer.get_workers(status="RUNNING")) == 2, timeout=60, message="2 workers")
        rids = producer.add_jobs([BatchJob(task="noop", parameters=[i]) for i in range(5000)])
        wait_until(
            lambda: count(db_config, "SELECT count(*) FROM {schema}.job_archive") >= 5000,
            timeout=120, interval=0.2, message="5000 archived jobs",
        )
    finally:
        codes = [stop_process(w) for w in workers]
    assert codes == [0, 0]
    assert count(db_config, "SELECT count(*) FROM {schema}.job") == 0
    assert count(db_config, "SELECT count(DISTINCT rid) FROM {schema}.job_archive WHERE status = 'SUCCEEDED'") == 5000
    assert count(db_config, "SELECT count(*) FROM {schema}.job_archive") == 5000
    # Both processes did part of the work.
    assert count(db_config, "SELECT count(DISTINCT worker_rid) FROM {schema}.job_archive") == 2
    assert count(db_config, "SELECT count(*) FROM {schema}.job_archive WHERE attempts <> 1") == 0
    results = {r.rid: r for r in producer.get_jobs_ended(limit=1)}
    assert len(results) == 1 and set(rids) >= set(results)
