"""Where users deploy: forking web servers, multiprocessing, a web framework's transaction."""

from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from queuer import new_queuer_with_db
from queuer.config.ports import free_port
from tests.servers import kill, promote, start_replica
from tests.support import ROOT, count, db_env, wait_until

pytestmark = pytest.mark.slow


def test_gunicorn_preload_with_a_queuer_made_at_import(db_config):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--preload", "--workers", "2", "--worker-class", "sync",
         "--bind", f"127.0.0.1:{port}", "--timeout", "30", "tests.apps.preloaded_wsgi:app"],
        env=db_env(db_config), cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )

    def get(i: int) -> tuple[int, dict]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request("GET", f"/?{i}")
            response = conn.getresponse()
            return response.status, json.loads(response.read() or b"{}")
        finally:
            conn.close()

    try:
        wait_until(lambda: _answers(port), timeout=30, message="gunicorn listens")
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(get, range(1000)))
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0].decode(errors="replace")
    assert [status for status, _ in answers] == [200] * 1000, output[-3000:]
    assert len({body["pid"] for _, body in answers}) == 2  # both forked workers served
    assert count(db_config, "SELECT count(*) FROM {schema}.job WHERE task_name = 'record'") == 1001


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _child_adds(q, n: int) -> None:
    for i in range(n):
        q.add_job("record", "child", i)
    os._exit(0)  # skip the parent's atexit handlers, as a forked worker process does


def test_multiprocessing_fork_parent_and_child_add_jobs_at_once(db_config):
    q = new_queuer_with_db("parent", 1, None, db_config)
    try:
        q.add_job("record", "before fork")
        child = multiprocessing.get_context("fork").Process(target=_child_adds, args=(q, 300))
        child.start()
        for i in range(300):
            q.add_job("record", "parent", i)
        child.join(60)
        assert child.exitcode == 0
        assert count(db_config, "SELECT count(*) FROM {schema}.job") == 601
        assert q.get_job(q.add_job("record", "after").rid) is not None  # the parent's pools still work
    finally:
        q.stop()


# -- a web framework's transaction ---------------------------------------------------------


def _django(db_config):
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DATABASES={"default": {
                "ENGINE": "django.db.backends.postgresql", "HOST": db_config.host, "PORT": db_config.port,
                "NAME": db_config.database or "postgres", "USER": db_config.username or "postgres",
                "PASSWORD": db_config.password or "",
            }},
            INSTALLED_APPS=[], USE_TZ=True,
        )
        django.setup()
    from django.db import connection, transaction

    return connection, transaction


def test_django_transactional_enqueue(make_queuer, db_config):
    connection, transaction = _django(db_config)
    from queuer import OnError, Options

    q = make_queuer()
    jobs = lambda: count(db_config, "SELECT count(*) FROM {schema}.job")  # noqa: E731

    class Rollback(Exception):
        pass

    with pytest.raises(Rollback):
        with transaction.atomic():
            connection.ensure_connection()
            q.add_job_tx(connection.connection, "record", "rolled back")
            raise Rollback
    assert jobs() == 0
    with transaction.atomic():
        connection.ensure_connection()
        job = q.add_job_with_options_tx(connection.connection, Options(on_error=OnError(max_retries=2)),
                                        "record", "kept")
        try:
            with transaction.atomic():  # a savepoint
                q.add_job_tx(connection.connection, "record", "in a rolled-back savepoint")
                raise Rollback
        except Rollback:
            pass
    assert jobs() == 1
    assert job.options is not None and job.options.on_error.max_retries == 2  # Django's jsonb loader is not ours
    assert q.get_job(job.rid).parameters == ["kept"]
    connection.close()
    with pytest.raises(TypeError, match="got None"):
        q.add_job_tx(connection.connection, "record")
    with pytest.raises(TypeError, match="psycopg 3 connection"):
        q.add_job_tx(connection, "record")


def test_sqlalchemy_transactional_enqueue(make_queuer, db_config):
    import sqlalchemy

    url = sqlalchemy.URL.create(
        "postgresql+psycopg", username=db_config.username or "postgres", password=db_config.password,
        host=db_config.host, port=db_config.port, database=db_config.database or "postgres",
    )
    engine = sqlalchemy.create_engine(url)
    q = make_queuer()
    jobs = lambda: count(db_config, "SELECT count(*) FROM {schema}.job")  # noqa: E731
    try:
        with engine.connect() as conn:
            with conn.begin() as tx:
                q.add_job_tx(conn.connection.driver_connection, "record", "rolled back")
                tx.rollback()
        assert jobs() == 0
        with engine.begin() as conn:
            job = q.add_job_tx(conn.connection.driver_connection, "record", "kept")
            savepoint = conn.begin_nested()
            q.add_job_tx(conn.connection.driver_connection, "record", "in a rolled-back savepoint")
            savepoint.rollback()
        assert jobs() == 1 and q.get_job(job.rid).parameters == ["kept"]
        closed = engine.raw_connection().driver_connection
        closed.close()
        with pytest.raises(ValueError, match="closed connection"):
            q.add_job_tx(closed, "record")
    finally:
        engine.dispose()


# -- failover ---------------------------------------------------------------------------------


def test_failover_to_a_promoted_replica_with_a_multi_host_url(tmp_path):
    from queuer import QueuerError
    from queuer.config.database import DatabaseConfiguration
    from queuer.tools.postgres_server import TemporaryPostgres, find_local_bin_dir
    from tests.test_crashes import Workers, starts_by_rid

    if find_local_bin_dir() is None:
        pytest.skip("a streaming replica needs the local server binaries")
    primary = TemporaryPostgres("local", {"synchronous_commit": "on"})
    primary.start()
    replica = start_replica(primary)
    try:
        # Synchronous replication, so a commit the primary acknowledged survives its death.
        with psycopg_connect(primary.config) as conn:
            conn.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
            conn.execute("SELECT pg_reload_conf()")
        url = (f"postgresql://postgres@127.0.0.1:{primary.config.port},127.0.0.1:{replica.config.port}"
               "/postgres?target_session_attrs=read-write")
        config = DatabaseConfiguration.from_env({"QUEUER_DB_URL": url, "QUEUER_DB_TIMEOUT": "5"})
        producer = new_queuer_with_db("producer", 1, None, config)
        workers = Workers(config, tmp_path / "starts", 1, concurrency=4, supervise=False,
                          env={"QUEUER_DB_URL": url})
        added, errors = [], []
        stop = threading.Event()

        def produce() -> None:
            while not stop.is_set():
                try:
                    added.append(producer.add_job("work", len(added)).rid)
                except QueuerError as exc:  # anything else fails the test
                    errors.append(exc)
                stop.wait(0.01)  # about 100 jobs per second

        try:
            workers.ready()
            thread = threading.Thread(target=produce, daemon=True)
            thread.start()
            wait_until(lambda: len(added) > 200, timeout=30, message="jobs flow")
            kill(primary)
            promote(replica)
            promoted_at = time.time()
            first = wait_until(lambda: [t for t, _, line in workers.lines
                                        if line.startswith("STARTED") and float(line.split()[2]) > promoted_at],
                               timeout=30, message="a job runs after the promotion")
            delay = float(min(first)) - promoted_at
            wait_until(lambda: len(added) > 600, timeout=60, message="jobs flow after the failover")
            stop.set()
            thread.join(30)
            wait_until(lambda: _count(replica.config, "SELECT count(*) FROM job") == 0, timeout=60,
                       message="every job ended")
        finally:
            stop.set()
            workers.close()
            producer.stop()
        print(f"\nfailover: the worker ran a job {delay:.2f} s after the promotion; "
              f"{len(added)} jobs added, {len(errors)} add_job calls raised "
              f"({', '.join(sorted({type(e).__name__ for e in errors})) or 'none'})")
        archived = dict(_rows(replica.config, "SELECT rid::text, status FROM job_archive"))
        assert all(archived.get(str(rid)) == "SUCCEEDED" for rid in added), "a job whose add_job returned was lost"
        assert max(starts_by_rid(tmp_path / "starts").values()) == 1
        assert delay < 2.0
    finally:
        replica.stop()
        primary.stop()


def psycopg_connect(config):
    import psycopg

    return psycopg.connect(**config.connect_kwargs(), autocommit=True)


def _rows(config, query):
    with psycopg_connect(config) as conn:
        return conn.execute(query).fetchall()


def _count(config, query) -> int:
    return int(_rows(config, query)[0][0])


def test_connection_budget_and_application_names(make_queuer, db_config):
    """A worker holds at most 4 connections whatever its concurrency; an idle producer holds 1."""
    from concurrent.futures import ThreadPoolExecutor as Pool

    from queuer import BatchJob
    from tests.support import sql

    def by_app() -> dict[str, int]:
        rows = sql(db_config, "SELECT application_name, count(*) FROM pg_stat_activity "
                                   "WHERE application_name LIKE 'queuer:%%' GROUP BY 1")
        return {name: n for name, n in rows}

    producer = make_queuer(name="budget-producer")
    for _ in range(20):  # bursts from several threads, then idle
        with Pool(8) as pool:
            list(pool.map(lambda _: producer.add_job("noop"), range(8)))
    worker = make_queuer(name="budget-worker", max_concurrency=64)
    worker.add_task_with_name(lambda: time.sleep(0.002), "noop")
    worker.add_jobs([BatchJob(task="noop") for _ in range(3000)])
    worker.start()
    peak: dict[str, int] = {}
    while count(db_config, "SELECT count(*) FROM {schema}.job") > 0:
        for name, n in by_app().items():
            peak[name] = max(peak.get(name, 0), n)
    worker_conns = sum(n for name, n in peak.items() if name.startswith("queuer:budget-worker:"))
    # An idle producer closes its burst's extra connections once quiet for a few seconds.
    producer_conns = wait_until(lambda: (n := by_app().get("queuer:budget-producer:producer", 0)) <= 1 and str(n),
                                timeout=20, message="the idle producer keeps one connection")
    producer_conns = int(producer_conns)
    print(f"\nconnections during a drain at max_concurrency 64: {peak}; idle producer: {producer_conns}")
    assert 1 <= worker_conns <= 4
    assert producer_conns <= 1
    assert {"queuer:budget-worker:worker", "queuer:budget-worker:session"} <= set(peak)
