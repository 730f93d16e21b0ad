"""A worker host that vanishes without closing anything: every packet dropped, both ways.

The worker runs in a network namespace of the test's own (see tests/netns.py);
its only way to PostgreSQL is a veth pair whose packets the test drops. Its
job must run on the other worker within 15 s; once the network heals the
partitioned worker learns it was declared dead, drops its stale attempt and
claims again under a new identity, and no job ends twice. A producer
partitioned mid-call gets one of queuer's errors within its QUEUER_DB_TIMEOUT.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from queuer import JobStatus, new_queuer_with_db
from tests.netns import IsolatedHost
from tests.servers import own_server
from tests.support import ROOT, db_env, read_lines_until, stop_process, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.crash]

ROUNDS = 5
RESCUE_BOUND = 15.0
PRODUCER_TIMEOUT = 4.0


@pytest.fixture(scope="module")
def network():
    reason = IsolatedHost.unavailable()
    if reason:
        pytest.skip(reason)
    host = IsolatedHost().create()
    try:
        server = own_server(listen=host.host_address, hba_first=[f"host all all {host.guest_address}/32 trust"])
    except BaseException:
        host.destroy()
        raise
    yield host, server
    server.stop()  # first: its backends go, so nothing is left sending towards the namespace
    host.destroy()


class Runs:
    """The run log the ``watched`` task writes: (event, rid, attempt, pid, wall time) per line."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def lines(self) -> list[tuple[str, str, int, int, float]]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            event, rid, attempt, pid, at = line.split()
            out.append((event, rid, int(attempt), int(pid), float(at)))
        return out

    def find(self, event: str, rid: str, pid: int) -> float | None:
        for e, r, _, p, at in self.lines():
            if (e, r, p) == (event, rid, pid):
                return at
        return None

    def overlaps_after(self, since: float) -> list[str]:
        """Jobs that had two runs alive at the same moment after ``since``."""
        spans: dict[tuple[str, int, int], list[float]] = {}
        for event, rid, attempt, pid, at in self.lines():
            key = (rid, attempt, pid)
            if event == "start":
                spans[key] = [at, float("inf")]
            elif key in spans:
                spans[key][1] = at
        bad = []
        for (rid, attempt, pid), (start, end) in spans.items():
            for (rid2, attempt2, pid2), (start2, end2) in spans.items():
                if rid == rid2 and (attempt, pid) < (attempt2, pid2):
                    overlap_from, overlap_to = max(start, start2, since), min(end, end2)
                    if overlap_from < overlap_to:
                        bad.append(f"{rid}: attempts {attempt} and {attempt2} overlap after the heal")
        return bad


def _worker(host: IsolatedHost | None, config, runs: Runs, name: str) -> subprocess.Popen[bytes]:
    env = {**db_env(config), "QUEUER_TEST_RUN_LOG": str(runs.path), "QUEUER_TEST_LOG_LEVEL": "WARNING"}
    args = [sys.executable, str(ROOT / "tests" / "worker_process.py"), "--concurrency", "2", "--name", name]
    kwargs = dict(env=env, cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    proc = host.popen(args, **kwargs) if host is not None else subprocess.Popen(args, **kwargs)
    read_lines_until(proc, lambda lines: any(line.startswith("READY") for line in lines), timeout=60)
    return proc


def test_a_partitioned_worker_is_replaced_within_15_seconds_and_stands_down_after_healing(network, tmp_path):
    host, server = network
    assert server.config is not None
    local = replace(server.config, schema="partition")
    remote = replace(local, host=host.host_address)
    runs = Runs(tmp_path / "runs.log")
    producer = new_queuer_with_db("partition-test", 1, None, local)
    partitioned = _worker(host, remote, runs, "partitioned")
    latencies: list[float] = []
    stand_down: list[float] = []
    try:
        for round_ in range(ROUNDS):
            job = producer.add_job("watched", f"round-{round_}")
            rid = str(job.rid)
            wait_until(lambda: runs.find("start", rid, partitioned.pid), timeout=30,
                       message="the job starts on the worker that will be partitioned")
            other = _worker(None, local, runs, f"other-{round_}")
            try:
                cut_at = time.time()
                host.partition()
                try:
                    started_elsewhere = wait_until(lambda: runs.find("start", rid, other.pid), timeout=40,
                                                   interval=0.05, message="the job runs on the other worker")
                finally:
                    host.heal()
                healed_at = time.time()
                latencies.append(started_elsewhere - cut_at)
                dropped = wait_until(lambda: runs.find("cancelled", rid, partitioned.pid), timeout=30,
                                     message="the partitioned worker drops its stale attempt")
                stand_down.append(max(0.0, dropped - healed_at))
                done = producer.wait_for_job_finished(job.rid, timeout_seconds=30)
                assert done.status == JobStatus.SUCCEEDED and done.result == f"round-{round_}"
                assert done.attempts == 2
                assert runs.overlaps_after(healed_at + 5.0) == []
            finally:
                stop_process(other)
        assert partitioned.poll() is None, "the partitioned worker kept running"
    finally:
        stop_process(partitioned)
        producer.stop()
    print(f"\nvanished worker host, {ROUNDS} partitions: its job ran elsewhere after "
          f"p50 {statistics.median(latencies):.1f} s, max {max(latencies):.1f} s; after healing it dropped its "
          f"stale attempt within p50 {statistics.median(stand_down):.1f} s, max {max(stand_down):.1f} s")
    assert max(latencies) <= RESCUE_BOUND, latencies
    # Every job ended exactly once.
    ended = producer.db.execute(
        f"SELECT rid, count(*) AS n FROM {local.schema}.job_archive WHERE task_name = 'watched' GROUP BY rid")
    assert len(ended) == ROUNDS and all(row["n"] == 1 for row in ended)


@pytest.mark.parametrize("client", ["sync", "async"])
def test_a_partitioned_producer_gets_our_error_within_its_timeout(network, tmp_path, client):
    host, server = network
    assert server.config is not None
    remote = replace(server.config, schema=f"partition_producer_{client}", host=host.host_address)
    env = {**db_env(remote), "QUEUER_DB_TIMEOUT": str(PRODUCER_TIMEOUT)}
    installer = new_queuer_with_db("installer", 1, None, replace(remote, host=server.config.host))
    installer.stop()
    args = [sys.executable, str(ROOT / "tests" / "producer_process.py"), *(["--async"] if client == "async" else [])]
    proc = host.popen(args, env=env, cwd=str(ROOT),
                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        read_lines_until(proc, lambda lines: sum(line.startswith("OK") for line in lines) >= 5, timeout=60)
        host.partition()
        try:
            lines = read_lines_until(proc, lambda lines: sum(line.startswith("ERR") for line in lines) >= 3,
                                     timeout=3 * PRODUCER_TIMEOUT + 10)
        finally:
            host.heal()
        after = len(lines)
        lines = read_lines_until(proc, lambda lines: any(line.startswith("OK") for line in lines[after:]),
                                 timeout=30)
    finally:
        stop_process(proc)
    errors = [line.split() for line in lines if line.startswith(("ERR", "RAW"))]
    print(f"\npartitioned {client} producer:", "; ".join(" ".join(e[:3]) for e in errors))
    for error in errors:
        assert error[0] == "ERR", error
        assert error[1] in ("DatabaseUnreachableError", "ConnectionLostError", "JobOutcomeUnknownError"), error
        assert float(error[2]) <= PRODUCER_TIMEOUT + 1.0, error  # libpq counts connect_timeout in whole seconds
