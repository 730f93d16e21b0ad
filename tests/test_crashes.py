"""At least once by default: crashes re-run jobs, never fail an innocent one, and are noticed fast.

Every worker here runs with default settings and every job without options:
what a new user gets. The processes are tests/crash_worker.py.
"""

from __future__ import annotations

import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from queuer import BatchJob, JobStatus
from tests.servers import restart
from tests.support import ROOT, count, db_env, process_gone, sql, wait_until

pytestmark = [pytest.mark.reliability, pytest.mark.crash, pytest.mark.slow]


class Workers:
    """Worker processes, their output lines, and a supervisor that restarts the dead ones."""

    def __init__(self, db_config, starts: Path, n: int, concurrency: int = 8, supervise: bool = True,
                 env: dict[str, str] | None = None, also: tuple[str, ...] = ()) -> None:
        self.env = {**db_env(db_config), "QUEUER_TEST_STARTS": str(starts)}
        if env:
            self.env = {k: v for k, v in self.env.items() if not k.startswith("QUEUER_DB_")}
            self.env.update(env, QUEUER_DB_SCHEMA=db_config.schema)
        self.concurrency = concurrency
        self.also = also
        self.lines: list[tuple[float, int, str]] = []  # (wall time, pid, line)
        self._lock = threading.Lock()
        self.procs = [self._spawn() for _ in range(n)]
        self._supervising = supervise
        self._stop = threading.Event()
        self.restarts = 0
        self._supervisor = threading.Thread(target=self._supervise, daemon=True)
        self._supervisor.start()

    def _spawn(self, also: tuple[str, ...] | None = None) -> subprocess.Popen[bytes]:
        extra = [arg for name in (self.also if also is None else also) for arg in ("--also", name)]
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "crash_worker.py"), "--concurrency", str(self.concurrency),
             *extra],
            env=self.env, cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()
        return proc

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            with self._lock:
                self.lines.append((time.time(), proc.pid, raw.decode(errors="replace").rstrip()))

    def _supervise(self) -> None:
        while not self._stop.wait(0.1):
            if not self._supervising:
                continue
            for i, proc in enumerate(self.procs):
                if proc.poll() is not None:
                    self.procs[i] = self._spawn()
                    self.restarts += 1

    def ready(self, timeout: float = 30.0) -> None:
        wait_until(lambda: all(self.said(p.pid, "READY") for p in self.procs), timeout=timeout,
                   message="every worker READY")

    def said(self, pid: int, prefix: str) -> list[str]:
        with self._lock:
            return [line for _, p, line in self.lines if p == pid and line.startswith(prefix)]

    def started(self, rid) -> list[tuple[float, int]]:
        """(wall time, worker pid) of each start of job ``rid``."""
        return [(at, worker) for at, worker, _ in self.started_in(rid)]

    def started_in(self, rid) -> list[tuple[float, int, int]]:
        """(wall time, worker pid, pid of the process the task ran in) of each start of job ``rid``."""
        with self._lock:
            return [(float(line.split()[2]), p, int(line.split()[3])) for _, p, line in self.lines
                    if line.startswith("STARTED ") and line.split()[1] == str(rid)]

    def add(self, also: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
        """One more worker, with ``also`` as its extra task names; not supervised."""
        proc = self._spawn(also)
        self.procs.append(proc)
        wait_until(lambda: self.said(proc.pid, "READY"), timeout=30, message="the new worker READY")
        return proc

    def kill(self, index: int) -> float:
        at = time.time()
        self.procs[index].send_signal(signal.SIGKILL)
        return at

    def close(self) -> None:
        self._stop.set()
        self._supervisor.join(5)
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def starts_by_rid(path: Path) -> Counter[str]:
    if not path.exists():
        return Counter()
    return Counter(line.split()[0] for line in path.read_text().splitlines() if line.strip())


def ended(db_config) -> dict[str, tuple[str, int, int, int, str | None]]:
    rows = sql(db_config, "SELECT rid::text, status, attempts, rescues, crashes, error FROM {schema}.job_archive")
    return {r[0]: (r[1], r[2], r[3], r[4], r[5]) for r in rows}


def test_kill_9_storm_with_no_options_reruns_every_job_and_charges_no_unstarted_one(make_queuer, db_config, tmp_path):
    starts = tmp_path / "starts"
    producer = make_queuer()
    producer.add_task_with_name(lambda i, seconds=0.05: i, "work")
    rids = producer.add_jobs([BatchJob(task="work", parameters=[i]) for i in range(3000)])
    workers = Workers(db_config, starts, 3)
    try:
        workers.ready()
        kills = 0
        for round_ in range(6):
            wait_until(lambda: len(starts_by_rid(starts)) > 300 * (round_ + 1), timeout=60,
                       message="progress before the next kill")
            assert count(db_config, "SELECT count(*) FROM {schema}.job") > 0, "the kill must land mid-run"
            workers.kill(round_ % 3)
            kills += 1
        wait_until(lambda: count(db_config, "SELECT count(*) FROM {schema}.job") == 0, timeout=120,
                   message="every job ended")
    finally:
        workers.close()
    outcomes = ended(db_config)
    assert len(outcomes) == 3000 and set(outcomes) == {str(r) for r in rids}
    assert Counter(o[0] for o in outcomes.values()) == {"SUCCEEDED": 3000}
    started = starts_by_rid(starts)
    rescued = [rid for rid, o in outcomes.items() if o[2] > 0]
    for rid, (_status, _attempts, _rescues, crashes, _error) in outcomes.items():
        # Every run that ended by a crash and was charged must be a run that started.
        assert crashes <= started[rid] - 1, (rid, crashes, started[rid])
    print(f"\n6 kills of 3 workers x 8 threads, 3000 jobs: {len(rescued)} rescued, "
          f"{sum(1 for o in outcomes.values() if o[1] > 1)} re-run, "
          f"{sum(o[3] for o in outcomes.values())} crashes charged, {workers.restarts} restarts")
    assert kills == 6 and rescued


def test_a_poison_job_ends_failed_after_the_crash_budget_and_the_rest_succeed(make_queuer, db_config, tmp_path):
    starts = tmp_path / "starts"
    producer = make_queuer()
    producer.add_task_with_name(lambda i, seconds=0.05: i, "work")
    producer.add_task_with_name(lambda: None, "poison")
    rids = producer.add_jobs([BatchJob(task="work", parameters=[i], parameters_keyed={"seconds": 0.02})
                              for i in range(400)])
    poison = producer.add_job("poison")
    workers = Workers(db_config, starts, 2, concurrency=4)
    try:
        workers.ready()
        done = producer.wait_for_job_finished(poison.rid, timeout_seconds=120)
        wait_until(lambda: count(db_config, "SELECT count(*) FROM {schema}.job") == 0, timeout=120,
                   message="every job ended")
    finally:
        workers.close()
    assert done.status == JobStatus.FAILED
    assert "crashed 5 times while it ran alone" in done.error and done.crashes == 5
    # Charged to nobody: the first crash (its start was not recorded) and the second (it ran
    # beside other jobs, so it became a suspect); then five crashes of the process it ran in alone.
    assert starts_by_rid(starts)[str(poison.rid)] == 7
    outcomes = ended(db_config)
    assert [outcomes.get(str(r)) for r in rids if outcomes.get(str(r), ("?",))[0] != "SUCCEEDED"] == []


def test_suspects_start_as_soon_as_a_thread_is_free_each_in_a_process_of_its_own(make_queuer, db_config, tmp_path):
    producer = make_queuer()
    for name in ("victim", "hold_a", "hold_b"):
        producer.add_task_with_name(lambda i, seconds=0.05: i, name)
    workers = Workers(db_config, tmp_path / "starts", 1, concurrency=4, supervise=False, also=("victim",))
    try:
        workers.ready()
        victims = [producer.add_job("victim", i, seconds=120).rid for i in range(4)]
        wait_until(lambda: all(workers.started(rid) for rid in victims), timeout=20, message="4 victims started")
        # Their worker dies: they run again on the next one, which records their starts.
        workers.add(("victim",))
        workers.kill(0)
        wait_until(lambda: all(len(workers.started(rid)) == 2 for rid in victims), timeout=20,
                   message="the victims started again")
        # Two workers, each busy with one long job: 6 threads free, and no worker idle.
        busy = [workers.add(("victim", "hold_a")), workers.add(("victim", "hold_b"))]
        holds = [producer.add_job(name, 0, seconds=300).rid for name in ("hold_a", "hold_b")]
        wait_until(lambda: all(workers.started(rid) for rid in holds), timeout=20, message="the long jobs started")
        # The victims' second worker dies too, while they ran beside each other: suspects, all four.
        killed_at = workers.kill(1)
        third = wait_until(lambda: [workers.started_in(rid)[2] for rid in victims] if all(
            len(workers.started_in(rid)) >= 3 for rid in victims) else None, timeout=20,
            message="every suspect started")
        delays = [at - killed_at for at, _worker, _pid in third]
        print(f"\n4 suspects beside 2 busy workers: started {', '.join(f'{d:.2f}' for d in delays)} s after the kill")
        assert max(delays) < 2.0, delays
        for _at, worker, pid in third:
            assert worker in {p.pid for p in busy} and pid != worker, "a suspect runs in a process of its own"
        assert count(db_config, "SELECT count(*) FROM {schema}.job WHERE suspect AND status = 'RUNNING'") == 4
        # A cancel kills a suspect's process.
        for rid in victims:
            producer.cancel_job(rid)
        children = [pid for _at, _worker, pid in third]
        wait_until(lambda: all(process_gone(pid) for pid in children), timeout=5, message="the suspects' processes gone")
        assert all(p.poll() is None for p in busy), "the workers go on"
        for rid in holds:
            producer.cancel_job(rid)
    finally:
        workers.close()
    assert {producer.get_job_ended(rid).status for rid in victims} == {JobStatus.CANCELLED}


def test_a_killed_workers_job_runs_again_elsewhere_within_2_seconds(make_queuer, db_config, tmp_path):
    producer = make_queuer()
    producer.add_task_with_name(lambda i, seconds=0.05: i, "work")
    workers = Workers(db_config, tmp_path / "starts", 2, concurrency=2, supervise=False)
    delays = []
    try:
        workers.ready()
        for _ in range(10):
            job = producer.add_job("work", 0, seconds=10)
            first = wait_until(lambda: workers.started(job.rid), timeout=20, message="the job started")
            victim = next(i for i, p in enumerate(workers.procs) if p.pid == first[0][1])
            killed_at = workers.kill(victim)
            again = wait_until(lambda: workers.started(job.rid)[1:], timeout=20, message="the job started again")
            delays.append(again[0][0] - killed_at)
            assert again[0][1] != first[0][1]
            producer.cancel_job(job.rid)
            workers.procs[victim].wait(10)
            workers.procs[victim] = workers._spawn()
            workers.ready()
    finally:
        workers.close()
    print(f"\nkill -9 -> the job starts again on the other worker: p50 {statistics.median(delays):.2f} s, "
          f"max {max(delays):.2f} s over {len(delays)} kills")
    assert max(delays) < 2.0, delays


def test_a_task_holding_the_gil_for_40_seconds_is_not_declared_dead(make_queuer, db_config, tmp_path):
    starts = tmp_path / "starts"
    producer = make_queuer()
    producer.add_task_with_name(lambda seconds: 0, "gil_hog")
    workers = Workers(db_config, starts, 2, concurrency=2, supervise=False)
    try:
        workers.ready()
        job = producer.add_job("gil_hog", 60)  # 40 to 60 s: the machine's speed varies
        done = producer.wait_for_job_finished(job.rid, timeout_seconds=150)
    finally:
        workers.close()
    held = (done.ended_at - done.started_at).total_seconds()
    print(f"\nthe GIL was held for {held:.1f} s in one call; the job ran once")
    assert held >= 40
    assert done.status == JobStatus.SUCCEEDED and done.rescues == 0 and done.attempts == 1
    assert starts_by_rid(starts)[str(job.rid)] == 1
    assert count(db_config, "SELECT count(*) FROM {schema}.worker WHERE status = 'DEAD'") == 0


def test_a_40_second_database_outage_declares_nobody_dead_and_loses_nothing(make_queuer, db_config, pg_server,
                                                                           tmp_path):
    if pg_server is None:
        pytest.skip("the PostgreSQL server is not ours to stop")
    from dataclasses import replace

    from queuer import DatabaseUnreachableError, new_queuer_with_db

    starts = tmp_path / "starts"
    producer = new_queuer_with_db("producer", 1, None, replace(db_config, timeout=2.0))
    producer.add_task_with_name(lambda i, seconds=0.05: i, "work")
    workers = Workers(db_config, starts, 2, concurrency=4, supervise=False)
    added, refused = [], 0
    try:
        workers.ready()
        for i in range(100):
            added.append(producer.add_job("work", i, seconds=0.2).rid)

        def outage() -> None:
            nonlocal refused
            down_until = time.monotonic() + 40
            while time.monotonic() < down_until:
                try:
                    added.append(producer.add_job("work", -1).rid)
                except DatabaseUnreachableError:
                    refused += 1

        restart(pg_server, while_down=outage)
        for i in range(100):
            added.append(producer.add_job("work", i).rid)
        wait_until(lambda: count(db_config, "SELECT count(*) FROM {schema}.job") == 0, timeout=120,
                   message="every job ended after the outage")
    finally:
        workers.close()
        producer.stop()
    assert refused > 0  # add_job during the outage raised queuer's error, after its bounded wait
    outcomes = ended(db_config)
    assert all(outcomes[str(r)][0] == "SUCCEEDED" for r in added), "a job whose add_job returned was lost"
    assert count(db_config, "SELECT count(*) FROM {schema}.worker WHERE status = 'DEAD'") == 0
    assert max(starts_by_rid(starts).values()) == 1  # nothing ran twice


def test_a_worker_started_while_the_database_is_down_runs_jobs_once_it_is_up(make_queuer, db_config, pg_server,
                                                                             tmp_path):
    if pg_server is None:
        pytest.skip("the PostgreSQL server is not ours to stop")
    holder: dict[str, Workers] = {}

    def start_worker_while_down() -> None:
        workers = Workers(db_config, tmp_path / "starts", 1, concurrency=2, supervise=False)
        holder["workers"] = workers
        wait_until(lambda: any("waiting for PostgreSQL" in line for _, _, line in workers.lines), timeout=30,
                   message="the worker waits for the database")
        assert workers.procs[0].poll() is None

    try:
        restart(pg_server, while_down=start_worker_while_down)
        up_at = time.time()
        workers = holder["workers"]
        workers.ready(timeout=30)
        producer = make_queuer()
        producer.add_task_with_name(lambda i, seconds=0.05: i, "work")
        job = producer.add_job("work", 1)
        done = producer.wait_for_job_finished(job.rid, timeout_seconds=30)
        assert done.status == JobStatus.SUCCEEDED
        print(f"\nworker started while PostgreSQL was down: first job done {time.time() - up_at:.2f} s after it came up")
    finally:
        if "workers" in holder:
            holder["workers"].close()
