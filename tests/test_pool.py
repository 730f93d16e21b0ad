"""The connection pool on its own, against a real PostgreSQL of the test's own."""

from __future__ import annotations

import os
import resource
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import psycopg
import pytest

from queuer.config.database import DatabaseConfiguration
from queuer.database.backoff import Backoff
from queuer.database.connection import Database
from queuer.errors import ConnectionLostError, DatabaseUnreachableError
from tests.servers import kill, own_server, restart
from tests.support import wait_until


@pytest.fixture(scope="module")
def server():
    server = own_server()
    yield server
    server.stop()


@pytest.fixture
def config(server) -> DatabaseConfiguration:
    if not server.running:
        server.start()
    assert server.config is not None
    return server.config


def _pids(db: Database) -> int:
    with db.connection() as conn:
        return conn.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"]


def _ours(config: DatabaseConfiguration, name: str) -> list[tuple]:
    with psycopg.connect(**config.connect_kwargs(), autocommit=True) as conn:
        return conn.execute("SELECT pid, state FROM pg_stat_activity WHERE application_name LIKE %s",
                            (f"queuer:{name}:%",)).fetchall()


def test_backoff_grows_to_its_ceiling_with_jitter_and_starts_over():
    backoff = Backoff(first=0.1, ceiling=0.8, jitter=0.2)
    delays = [backoff.next() for _ in range(6)]
    for delay, nominal in zip(delays, [0.1, 0.2, 0.4, 0.8, 0.8, 0.8]):
        assert nominal * 0.8 <= delay <= nominal
    backoff.reset()
    assert backoff.next() <= 0.1
    with pytest.raises(ValueError):
        Backoff(first=2, ceiling=1)


def test_32_threads_share_three_connections(config):
    db = Database(config, name="pool32")
    assert db.pool.size == 3
    peak = 0
    errors: list[BaseException] = []

    def work(_: int) -> set[int]:
        nonlocal peak
        seen = set()
        for _ in range(50):
            try:
                seen.add(_pids(db))
            except BaseException as exc:
                errors.append(exc)
            peak = max(peak, db.pool.open_count)
        return seen

    with ThreadPoolExecutor(32) as pool:
        pids = set().union(*pool.map(work, range(32)))
    assert errors == []
    assert len(pids) <= 3 and peak <= 3
    assert len(_ours(config, "pool32")) <= 3
    db.close()


def test_a_connection_given_back_inside_a_transaction_is_not_reused(config):
    db = Database(config, name="pooltx")
    with pytest.raises(psycopg.errors.DivisionByZero):
        with db.connection() as conn:
            conn.execute("BEGIN")
            conn.execute("SELECT 1/0")
    with db.connection() as conn:
        conn.execute("BEGIN")
        conn.execute("SELECT pg_advisory_xact_lock(4242)")
        # given back with the transaction (and its lock) still open
    with db.connection() as conn:
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        locked = conn.execute("SELECT pg_try_advisory_xact_lock(4242) AS ok").fetchone()["ok"]
    assert locked, "the abandoned transaction's lock was still held: its connection went back to the pool"
    assert not [state for _, state in _ours(config, "pooltx") if state.startswith("idle in transaction")]
    assert db.pool.open_count <= db.pool.size
    db.close()


def test_the_pool_recovers_from_a_server_restart_without_an_error(config, server):
    db = Database(config, name="poolrestart")
    before = _pids(db)
    restart(server)
    after = _pids(db)  # the old connection's goodbye is seen before anything is sent
    assert after != before
    db.close()


def test_the_pool_recovers_when_every_connection_is_terminated(config):
    db = Database(config, name="poolkill")
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda _: _pids(db), range(30)))
    session = db.connect_session()
    with psycopg.connect(**config.connect_kwargs(), autocommit=True) as admin:
        killed = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                               "WHERE application_name LIKE 'queuer:poolkill:%%'").fetchone()[0]
    assert killed >= 2
    # Their goodbyes are on the way; a statement sent before one arrives would fail (ConnectionLostError).
    wait_until(lambda: not _ours(config, "poolkill"), timeout=10, message="the terminated backends are gone")
    for _ in range(10):
        _pids(db)
    with pytest.raises(psycopg.OperationalError):
        session.execute("SELECT 1")  # the session is the notifier's to reconnect, not the pool's
    session.close()
    db.close()


def test_a_statement_cut_off_mid_way_is_our_error(config):
    db = Database(config, name="poolcut")
    victim = _pids(db)
    def terminate() -> None:
        with psycopg.connect(**config.connect_kwargs(), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (victim,))

    killer = threading.Timer(0.3, terminate)
    killer.start()
    with pytest.raises(ConnectionLostError, match="lost the connection"):
        with db.connection() as conn:
            conn.execute("SELECT pg_sleep(5)")
    killer.join()
    assert _pids(db) != victim
    db.close()


def test_a_fork_while_another_thread_holds_the_pool_lock(config):
    db = Database(config, name="poolfork")
    parent_pid = _pids(db)
    held = threading.Event()
    release = threading.Event()

    def hold_lock() -> None:
        with db.pool._cond:  # what a borrow does for a moment, made to last over the fork
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold_lock)
    holder.start()
    held.wait(5)
    child = _fork_and_query(db, parent_pid)
    release.set()
    holder.join()
    _assert_child_succeeded(child)
    assert _pids(db) == parent_pid  # the parent's connection was left alone
    db.close()


def test_a_fork_with_a_connection_lent_out(config):
    db = Database(config, name="poolfork2")
    with db.connection() as conn:
        parent_pid = conn.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"]
        child = _fork_and_query(db, parent_pid, lent=conn)
        _assert_child_succeeded(child)
        assert conn.execute("SELECT 1 AS one").fetchone()["one"] == 1  # still ours, still open
    db.close()


def _fork_and_query(db: Database, parent_pid: int, lent=None) -> int:
    """Fork; the child queries through ``db`` on a connection of its own (never the parent's), then exits.

    ``lent``: a connection the parent has borrowed, which the child gives back first (as a
    ``with db.connection()`` block that spans the fork does): it must not reuse or close it.
    """
    import signal

    child = os.fork()
    if child == 0:
        code = 1
        try:
            signal.alarm(10)  # a hang in the child ends it instead of the test run
            if lent is not None:
                db.pool.give_back(lent)
            code = 0 if _pids(db) != parent_pid and _pids(db) != parent_pid else 2
        finally:
            os._exit(code)
    return child


def _assert_child_succeeded(child: int) -> None:
    _, status = os.waitpid(child, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child ended with status {status}"


def test_a_process_with_1100_open_files_borrows_without_a_ping_each_time(config):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"the hard limit on open files is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    files = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        db = Database(config, name="poolfds")
        with db.connection() as conn:
            assert conn.pgconn.socket >= 1024
        for _ in range(200):
            _pids(db)
        assert db.pool.pings == 0
        db.close()
        # A whole queuer in that process: adds and runs jobs, no ping per borrow either.
        from queuer import BatchJob, new_queuer_with_db

        q = new_queuer_with_db("fds", 4, None, replace(config, schema="pool_fds"))
        try:
            q.add_task_with_name(lambda i: i, "echo")
            q.start()
            rids = [q.add_job("echo", i).rid for i in range(100)]
            rids += q.add_jobs([BatchJob(task="echo", parameters=[i]) for i in range(100)])
            for rid in rids:
                q.wait_for_job_finished(rid, timeout_seconds=30)
            assert q.db.pool.pings <= 5, q.db.pool.pings
        finally:
            q.stop()
    finally:
        for fd in files:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_terminated_idle_connection_is_replaced_before_use(config):
    db = Database(config, name="poolidle")
    first = _pids(db)
    with psycopg.connect(**config.connect_kwargs(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (first,))
    wait_until(lambda: not _ours(config, "poolidle"), timeout=10, message="the terminated backend is gone")
    assert _pids(db) != first  # its goodbye was seen before anything was sent: no error
    db.close()


def test_waiting_while_the_server_is_down_says_so(config, server):
    db = Database(replace(config, pool_size=1, timeout=1.5), name="pooldown")
    _pids(db)
    db.close()
    kill(server)
    try:
        errors: list[str] = []

        def call() -> None:
            started = time.monotonic()
            try:
                _pids(db)
            except DatabaseUnreachableError as exc:
                errors.append(f"{time.monotonic() - started:.1f}s {exc}")

        threads = [threading.Thread(target=call) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(errors) == 3
        for error in errors:
            assert "raise the pool size" not in error, error
            seconds = float(error.split("s ", 1)[0])
            assert seconds < 1.5 + 2.5, error  # the call's time, plus at most libpq's 2 s attempt
    finally:
        restart(server)


def test_close_cancels_the_trim_timer_and_the_pool_opens_again_when_used(config):
    db = Database(config, name="pooltrim")
    db.pool.keep_idle = 1
    barrier = threading.Barrier(3)

    def hold(_: int) -> None:
        with db.connection():
            barrier.wait(5)

    with ThreadPoolExecutor(3) as pool:
        list(pool.map(hold, range(3)))
    trimmer = db.pool._trimmer
    assert trimmer is not None
    db.close()
    assert db.pool._trimmer is None
    wait_until(lambda: not trimmer.is_alive(), timeout=5, message="the trim timer ends")
    assert db.pool.idle_count == 0
    _pids(db)  # used again: opens a connection
    db.close()


def _user_timeout(conn) -> int:
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, fileno=conn.pgconn.socket)
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT)
    finally:
        sock.detach()


def test_a_borrow_bounds_the_socket_by_its_deadline_and_gives_it_back_unbounded(config):
    db = Database(replace(config, timeout=5), name="poolsock")
    with db.connection() as conn:
        assert 4000 <= _user_timeout(conn) <= 4500  # 90 % of the 5 s left
    assert _user_timeout(conn) == 10_000  # idle again: the network timeout
    db.close()


def test_a_users_tcp_user_timeout_is_left_alone(config):
    db = Database(replace(config, extra={"tcp_user_timeout": 7000}), name="poolsock2")
    for _ in range(2):
        with db.connection() as conn:
            assert _user_timeout(conn) == 7000
    db.close()
