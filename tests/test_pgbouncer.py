"""Behind PgBouncer (Debian's package, started here on loopback): session and transaction pooling.

Skipped only where the pgbouncer binary is missing (.ci/run installs it).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from queuer import JobStatus, Options, current_job, new_queuer_with_db
from queuer.config.database import DatabaseConfiguration
from queuer.config.ports import free_port
from tests.support import FAST, count, wait_until

PGBOUNCER = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(PGBOUNCER is None, reason="pgbouncer is not installed (.ci/run installs it)"),
]


class PgBouncer:
    """A PgBouncer in front of the test server, run as the postgres user when we are root."""

    def __init__(self, server: DatabaseConfiguration, mode: str) -> None:
        self.server = server
        self.mode = mode
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="queuer-pgbouncer-"))
        self.proc: subprocess.Popen[bytes] | None = None
        user = server.username or "postgres"
        (self.dir / "users.txt").write_text(f'"{user}" ""\n')
        (self.dir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host={server.host} port={server.port}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.dir / 'users.txt'}\n"
            f"pool_mode = {mode}\nmax_client_conn = 500\ndefault_pool_size = 40\n"
            f"logfile = {self.dir / 'pgbouncer.log'}\n"
        )
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
            for path in self.dir.iterdir():
                shutil.chown(path, "postgres")

    def config(self, schema: str, **changes: object) -> DatabaseConfiguration:
        return replace(DatabaseConfiguration(host="127.0.0.1", port=self.port, database=self.server.database,
                                             username=self.server.username, schema=schema), **changes)

    def start(self) -> None:
        command = [PGBOUNCER, str(self.dir / "pgbouncer.ini")]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        # A session of its own: stop() signals runuser and PgBouncer together.
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        wait_until(self._listens, timeout=20, message="pgbouncer listens")

    def _listens(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            # SIGINT would wait for every client to leave; SIGTERM shuts down now.
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(10)
                    if not _group_alive(self.proc.pid):
                        break
                except subprocess.TimeoutExpired:
                    continue
        shutil.rmtree(self.dir, ignore_errors=True)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


@pytest.fixture
def bouncers(pg_server_config):
    made: list[PgBouncer] = []

    def make(mode: str) -> PgBouncer:
        bouncer = PgBouncer(pg_server_config, mode)
        made.append(bouncer)
        return bouncer

    yield make
    for bouncer in made:
        bouncer.stop()


def _run_the_suite(config: DatabaseConfiguration, db_config: DatabaseConfiguration) -> list[float]:
    """2,000 jobs over 2 workers, a cron schedule, a delayed job and a cancel; returns start latencies (s)."""
    cancelled_seen = threading.Event()
    cancellable_started = threading.Event()
    starts: dict[str, float] = {}

    def work(i: int) -> int:
        starts.setdefault(str(current_job().rid), time.time())
        return i

    def wait_for_cancel() -> str:
        cancellable_started.set()
        if current_job().wait_cancelled(30):
            cancelled_seen.set()
        return "done"

    workers = []
    try:
        for name in ("w1", "w2"):
            q = new_queuer_with_db(name, 8, None, config, settings=FAST)
            q.add_task(work)
            q.add_task(wait_for_cancel)
            q.add_task_with_name(lambda: "tick", "tick")
            q.start()
            workers.append(q)
        producer = workers[0]
        producer.add_schedule("every-second", "* * * * * *", "tick")
        from queuer import BatchJob

        rids = producer.add_jobs([BatchJob(task="work", parameters=[i]) for i in range(2000)])
        delayed = producer.add_job_with_options(Options(execute_after=timedelta(seconds=1)), "work", -1)
        long = producer.add_job("wait_for_cancel")
        # RUNNING in the table only means claimed: it may still wait in a worker's buffer.
        assert cancellable_started.wait(30), "the cancellable job never started"
        assert producer.get_job(long.rid).status == JobStatus.RUNNING
        producer.cancel_job(long.rid)
        assert cancelled_seen.wait(10), "the cancel did not reach the running task"
        wait_until(lambda: count(db_config, "SELECT count(*) FROM {schema}.job_archive WHERE status = 'SUCCEEDED' "
                                 "AND task_name = 'work'") == 2001, timeout=90, message="every job ran")
        done = producer.get_job_ended(delayed.rid)
        assert (done.started_at - done.created_at).total_seconds() >= 0.9
        wait_until(lambda: count(db_config, "SELECT count(*) FROM {schema}.job_archive WHERE task_name = 'tick'") >= 2,
                   timeout=10, message="cron ticks fire")
        assert all(producer.get_job_ended(r).status == JobStatus.SUCCEEDED for r in rids[:50])
        latencies = []
        for i in range(30):
            t0 = time.time()
            job = producer.add_job("work", i)
            producer.wait_for_job_finished(job.rid, 10)
            latencies.append(starts[str(job.rid)] - t0)
        return latencies
    finally:
        for q in workers:
            q.stop()


def test_session_pooling_needs_no_setting(bouncers, db_config):
    bouncer = bouncers("session")
    bouncer.start()
    latencies = _run_the_suite(bouncer.config(db_config.schema), db_config)
    print(f"\nsession pooling: add_job -> start p50 {statistics.median(latencies) * 1000:.1f} ms")


def test_transaction_pooling_with_a_direct_url(bouncers, db_config):
    bouncer = bouncers("transaction")
    bouncer.start()
    direct = (f"host={db_config.host} port={db_config.port} dbname={db_config.database or 'postgres'} "
              f"user={db_config.username or 'postgres'}")
    config = bouncer.config(db_config.schema, pooler="transaction", direct_url=direct)
    latencies = _run_the_suite(config, db_config)
    p50 = statistics.median(latencies) * 1000
    print(f"\ntransaction pooling with a direct URL: add_job -> start p50 {p50:.1f} ms")
    assert p50 < 20


def test_transaction_pooling_without_a_session_polls(bouncers, db_config):
    bouncer = bouncers("transaction")
    bouncer.start()
    config = bouncer.config(db_config.schema, pooler="transaction")
    latencies = _run_the_suite(config, db_config)
    print(f"\ntransaction pooling, no session: add_job -> start p50 {statistics.median(latencies) * 1000:.1f} ms")
    assert count(db_config, "SELECT count(*) FROM {schema}.worker WHERE liveness = 'heartbeat'") == 2


def test_a_worker_behind_a_pooler_that_refuses_it_starts_once_it_is_fixed(bouncers, db_config):
    bouncer = bouncers("session")
    config = bouncer.config(db_config.schema)
    made: dict[str, object] = {}

    def start_worker() -> None:  # the pooler is not up yet: the worker waits for it
        q = new_queuer_with_db("late", 2, None, config, settings=FAST)
        q.add_task_with_name(lambda: "ran", "late")
        q.start()
        made["q"] = q

    thread = threading.Thread(target=start_worker, daemon=True)
    thread.start()
    try:
        wait_until(lambda: thread.is_alive(), timeout=5, message="the worker is trying")
        producer = new_queuer_with_db("producer", 1, None, db_config)
        job = producer.add_job("late")
        bouncer.start()
        fixed_at = time.monotonic()
        done = producer.wait_for_job_finished(job.rid, 30)
        took = time.monotonic() - fixed_at
        print(f"\na worker started before its pooler ran a job {took:.2f} s after the pooler came up")
        assert done.status == JobStatus.SUCCEEDED and took < 5
        producer.stop()
    finally:
        thread.join(30)
        if "q" in made:
            made["q"].stop()  # type: ignore[attr-defined]


def test_a_transaction_pooler_without_the_setting_is_a_clear_error(bouncers, db_config):
    from queuer import ConfigurationError

    bouncer = bouncers("transaction")
    bouncer.start()
    q = new_queuer_with_db("unaware", 4, None, bouncer.config(db_config.schema), settings=FAST)
    try:
        q.add_task_with_name(lambda: None, "noop")
        q.worker_db.activate(q.worker.rid, "unaware", 4, ["noop"], None, "heartbeat")

        def claim_until_it_fails() -> str:
            for _ in range(200):
                try:
                    # Claims are prepared statements; other clients share the server connections.
                    with q.db.connection() as conn:
                        conn.execute("SELECT 1")
                    q.attempt_db.claim(q.worker.rid, ["noop"], 1, 1, None, 5)
                except ConfigurationError as exc:
                    return str(exc)
            return ""

        with ThreadPoolExecutor(4) as pool:
            messages = list(pool.map(lambda _: claim_until_it_fails(), range(4)))
        assert any("QUEUER_DB_POOLER=transaction" in m for m in messages), messages
    finally:
        q.stop()


