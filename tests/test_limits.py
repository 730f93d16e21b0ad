"""Task limits hold across worker processes: concurrency, serialized dispatch, rate."""

from __future__ import annotations

import pytest

from queuer import BatchJob, JobStatus, Options
from tests.support import count, start_worker_process, stop_process, wait_until

pytestmark = pytest.mark.load


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def run_on_three_workers(make_queuer, db_config, task: str, jobs: int, seconds: float, timeout: float):
    producer = make_queuer()
    workers = [start_worker_process(db_config, "--concurrency", "4") for _ in range(3)]
    try:
        wait_until(lambda: len(producer.get_workers(status="RUNNING")) == 3, timeout=60, message="3 workers")
        producer.add_jobs([BatchJob(task=task, parameters_keyed={"seconds": seconds}) for _ in range(jobs)])
        wait_until(lambda: count(db_config, "SELECT count(*) FROM {schema}.job_archive") >= jobs,
                   timeout=timeout, interval=0.1, message=f"{jobs} {task} jobs archived")
    finally:
        for w in workers:
            stop_process(w)
    ended = producer.get_jobs_ended(limit=jobs)
    assert len(ended) == jobs and all(j.status == JobStatus.SUCCEEDED for j in ended)
    return ended


def test_concurrency_limit_of_2_is_never_exceeded_across_3_processes(make_queuer, db_config):
    ended = run_on_three_workers(make_queuer, db_config, "limited_to_2", 60, 0.05, 60)
    intervals = [(j.result["start"], j.result["end"]) for j in ended]
    assert max_overlap(intervals) == 2  # the limit is used, and never exceeded
    assert len({j.worker_rid for j in ended}) >= 2  # shared among processes


def test_serialized_task_runs_one_at_a_time_across_3_processes(make_queuer, db_config):
    ended = run_on_three_workers(make_queuer, db_config, "serial", 30, 0.03, 60)
    assert max_overlap([(j.result["start"], j.result["end"]) for j in ended]) == 1


def test_rate_limit_of_20_per_second_holds_within_10_percent_over_10_s(make_queuer, db_config):
    ended = run_on_three_workers(make_queuer, db_config, "rated_20", 240, 0.0, 60)
    starts = sorted(j.result["start"] for j in ended)
    window_start = starts[0] + 1.0  # skip the first burst
    in_window = [s for s in starts if window_start <= s < window_start + 10.0]
    assert 180 <= len(in_window) <= 220, len(in_window)
    assert len({j.worker_rid for j in ended}) >= 2


def test_jobs_with_the_same_serial_key_run_one_at_a_time(make_queuer, db_config):
    producer = make_queuer()
    workers = [start_worker_process(db_config, "--concurrency", "4") for _ in range(3)]
    keys = ["alpha", "beta", "gamma"]
    try:
        wait_until(lambda: len(producer.get_workers(status="RUNNING")) == 3, timeout=60, message="3 workers")
        producer.add_jobs([
            BatchJob(task="timed", parameters_keyed={"seconds": 0.03}, options=Options(serial_key=keys[i % 3]))
            for i in range(45)
        ])
        wait_until(lambda: count(db_config, "SELECT count(*) FROM {schema}.job_archive") >= 45,
                   timeout=60, interval=0.1, message="45 keyed jobs archived")
    finally:
        for w in workers:
            stop_process(w)
    # Ids follow the batch's order, so job i had key i % 3.
    ended = sorted(producer.get_jobs_ended(limit=100), key=lambda j: j.id)
    assert len(ended) == 45 and all(j.status == JobStatus.SUCCEEDED for j in ended)
    spans = [(j.result["start"], j.result["end"]) for j in ended]
    for k, key in enumerate(keys):
        assert max_overlap(spans[k::3]) == 1, key
    assert max_overlap(spans) >= 2  # different keys do run side by side


@pytest.mark.parametrize("processes", [1, 2])
def test_a_serial_keys_next_job_starts_as_soon_as_the_last_ends(make_queuer, db_config, processes):
    # Workers in separate OS processes: the end of a job wakes the other process's poller too.
    producer = make_queuer()
    workers = [start_worker_process(db_config, "--concurrency", "4") for _ in range(processes)]
    try:
        wait_until(lambda: len(producer.get_workers(status="RUNNING")) == processes, timeout=60,
                   message=f"{processes} worker processes")
        rids = producer.add_jobs([BatchJob(task="timed", parameters_keyed={"seconds": 0.05},
                                           options=Options(serial_key="one-key")) for _ in range(20)])
        ended = [producer.wait_for_job_finished(rid, 30) for rid in rids]
    finally:
        for w in workers:
            stop_process(w)
    assert {j.status for j in ended} == {JobStatus.SUCCEEDED}
    took = (max(j.ended_at for j in ended) - min(j.started_at for j in ended)).total_seconds()
    print(f"\n20 x 50 ms jobs on one serial key, {processes} worker process(es): {took:.2f} s (ideal 1.0 s)")
    if processes == 2:
        assert len({j.worker_rid for j in ended}) == 2  # both processes took turns
    assert took < 1.5


def test_retry_delays_get_jitter_and_never_shrink():
    from queuer import OnError, RetryBackoff

    plain = OnError(retry_delay=1.0, retry_backoff=RetryBackoff.EXPONENTIAL)
    delays = {round(plain.retry_delay_after(3), 6) for _ in range(50)}
    assert len(delays) > 1 and all(4.0 <= d <= 4.4 for d in delays)
    assert OnError(retry_delay=1.0, retry_jitter=0).retry_delay_after(1) == 1.0
    with pytest.raises(ValueError, match="retry_jitter"):
        OnError(retry_jitter=2)
