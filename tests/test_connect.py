"""Opening connections: what waiting can't fix fails at once; every libpq parameter the user gives wins."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import replace

import psycopg
import pytest

from queuer import new_queuer, new_queuer_with_db
from queuer.config.database import DatabaseConfiguration
from queuer.errors import ConfigurationError, DatabaseUnreachableError
from tests.servers import log_lines, own_server
from tests.support import ROOT, wait_until


@pytest.fixture(scope="module")
def server():
    server = own_server(hba_first=[
        "host all secret 127.0.0.1/32 scram-sha-256",
        "host all shut_out 127.0.0.1/32 reject",
    ])
    assert server.config is not None
    with psycopg.connect(**server.config.connect_kwargs(), autocommit=True) as conn:
        conn.execute("CREATE ROLE secret LOGIN PASSWORD 'right'")
        conn.execute("CREATE ROLE shut_out LOGIN")
        conn.execute("CREATE ROLE no_login NOLOGIN")
    yield server
    server.stop()


@pytest.fixture
def config(server) -> DatabaseConfiguration:
    assert server.config is not None
    return server.config


def _env(monkeypatch, config: DatabaseConfiguration, **overrides: str) -> None:
    for key in ("HOST", "PORT", "DATABASE", "USERNAME", "PASSWORD", "URL", "SCHEMA", "SSLMODE"):
        monkeypatch.delenv(f"QUEUER_DB_{key}", raising=False)
    values = {"HOST": str(config.host), "PORT": str(config.port), "DATABASE": "postgres",
              "USERNAME": "postgres", **overrides}
    for key, value in values.items():
        monkeypatch.setenv(f"QUEUER_DB_{key}", value)


REFUSALS = [
    pytest.param({"USERNAME": "secret", "PASSWORD": "Tr0ub4dor-x"}, "secret", "QUEUER_DB_PASSWORD", id="wrong-password"),
    pytest.param({"USERNAME": "secret"}, None, "QUEUER_DB_PASSWORD", id="no-password"),
    pytest.param({"DATABASE": "nosuchdb"}, "nosuchdb", "QUEUER_DB_DATABASE", id="unknown-database"),
    pytest.param({"USERNAME": "nosuchrole"}, "nosuchrole", "QUEUER_DB_USERNAME", id="unknown-role"),
    pytest.param({"USERNAME": "shut_out"}, "shut_out", "pg_hba.conf", id="pg_hba-reject"),
    pytest.param({"USERNAME": "no_login"}, "no_login", "LOGIN", id="role-without-login"),
    pytest.param({"SSLMODE": "require"}, None, "QUEUER_DB_SSLMODE", id="tls-required-but-refused"),
]


@pytest.mark.parametrize("overrides, who, advice", REFUSALS)
def test_what_waiting_cannot_fix_fails_at_once_with_one_fatal(monkeypatch, server, config, overrides, who, advice):
    _env(monkeypatch, config, **overrides)
    fatal_before = len(log_lines(server, "FATAL"))
    started = time.monotonic()
    with pytest.raises(ConfigurationError) as raised:
        new_queuer("refused", 1)
    elapsed = time.monotonic() - started
    assert elapsed < 2.0, f"took {elapsed:.1f}s"
    assert advice in str(raised.value)
    if "PASSWORD" in overrides:
        assert overrides["PASSWORD"] not in str(raised.value)
    # libpq may try IPv4 and TLS variants once each; never a retry loop. Without a
    # password (or without TLS) libpq gives up on its side, and the server logs nothing.
    if who is not None:
        wait_until(lambda: [line for line in log_lines(server, "FATAL")[fatal_before:] if who in line],
                   timeout=5, message="the refusal is logged")
    assert len(log_lines(server, "FATAL")) - fatal_before <= 2


@pytest.mark.parametrize("message, final", [
    ('connection failed: FATAL:  password authentication failed for user "app"', True),
    ("server does not support SSL, but SSL was required", True),
    ('FATAL:  permission denied to set parameter "log_statement"', True),
    ('FATAL:  no pg_hba.conf entry for host "10.0.0.9", user "app", database "app"', True),
    ("connection failed: connection refused", False),
    ("connection timeout expired", False),
    ("FATAL:  the database system is starting up", False),
    ("FATAL:  sorry, too many clients already", False),
    ('could not translate host name "db" to address: Name or service not known', False),
    ("server closed the connection unexpectedly", False),
    ("SSL error: unexpected eof while reading", False),
    ('FATAL:  database "certificates" is not currently accepting connections', False),
])
def test_which_answers_are_final(message, final):
    from queuer.database.connect import refusal

    assert (refusal(Exception(message)) is not None) == final


def test_an_unreachable_server_is_waited_for_then_reported(monkeypatch, config):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    _env(monkeypatch, config, PORT=str(closed_port), STARTUP_WAIT="1.5")
    started = time.monotonic()
    with pytest.raises(DatabaseUnreachableError, match="cannot connect"):
        new_queuer("unreachable", 1)
    assert 1.4 < time.monotonic() - started < 5


# -- every libpq parameter the user gives is the one in force ------------------------------------

def _in_force(q) -> dict[str, str]:
    """Client-side parameters of a pooled connection, its server settings and application name."""
    with q.db.connection() as conn:
        client = conn.info.get_parameters()
        server = {name: conn.execute(f"SHOW {name}").fetchone()[name]
                  for name in ("statement_timeout", "tcp_keepalives_idle", "tcp_user_timeout", "jit")}
        name = conn.execute("SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()"
                            ).fetchone()["application_name"]
    session = q.db.connect_session()
    try:
        session_client = session.info.get_parameters()
        session_idle = session.execute("SHOW tcp_keepalives_idle").fetchone()["tcp_keepalives_idle"]
    finally:
        session.close()
    return {**client, **{f"server.{k}": v for k, v in server.items()}, "app": name,
            "session.keepalives_idle": session_client.get("keepalives_idle", ""),
            "session.server.tcp_keepalives_idle": session_idle}


def _url(config: DatabaseConfiguration, query: str) -> str:
    return f"postgresql://postgres@{config.host}:{config.port}/postgres?{query}"


def _conninfo(config: DatabaseConfiguration, params: str) -> str:
    return f"host={config.host} port={config.port} dbname=postgres user=postgres {params}"


def test_our_defaults_when_the_user_gives_nothing(monkeypatch, config):
    _env(monkeypatch, config)
    with new_queuer("defaults", 1) as q:
        got = _in_force(q)
    assert got["tcp_user_timeout"] == "10000" and got["keepalives_idle"] == "4"
    assert got["server.tcp_keepalives_idle"] == "4" and got["server.tcp_user_timeout"] == "10000"
    assert got["session.server.tcp_keepalives_idle"] == "4"
    assert got["server.jit"] == "off"
    assert got["app"] == "queuer:defaults:producer"


def test_the_network_timeout_tunes_both_ends(monkeypatch, config):
    _env(monkeypatch, config, NETWORK_TIMEOUT="5")
    with new_queuer("fivesec", 1) as q:
        got = _in_force(q)
    assert got["tcp_user_timeout"] == "5000" and got["server.tcp_user_timeout"] == "5000"
    assert got["keepalives_idle"] == "2" and got["server.tcp_keepalives_idle"] == "2"


PARAMETERS = [
    ("connect_timeout=3", {"connect_timeout": "3"}),
    ("target_session_attrs=read-write", {"target_session_attrs": "read-write"}),
    ("keepalives_idle=7&keepalives_interval=3&keepalives_count=5",
     {"keepalives_idle": "7", "keepalives_interval": "3", "keepalives_count": "5", "session.keepalives_idle": "7"}),
    ("tcp_user_timeout=7000", {"tcp_user_timeout": "7000"}),
    ("application_name=billing", {"app": "billing"}),
    ("options=-c%20statement_timeout%3D4321%20-c%20tcp_keepalives_idle%3D33%20-c%20jit%3Don",
     {"server.statement_timeout": "4321ms", "server.tcp_keepalives_idle": "33", "server.jit": "on",
      "session.server.tcp_keepalives_idle": "33"}),
    ("sslmode=disable", {"sslmode": "disable"}),
]


@pytest.mark.parametrize("form", ["url", "conninfo"])
@pytest.mark.parametrize("query, expected", PARAMETERS, ids=[p[0].split("=")[0] for p in PARAMETERS])
def test_a_libpq_parameter_in_the_url_wins(monkeypatch, config, form, query, expected):
    if form == "url":
        url = _url(config, query)
    else:
        from urllib.parse import parse_qsl

        params = " ".join(f"{k}='{v}'" for k, v in parse_qsl(query))
        url = _conninfo(config, params)
    for key in ("HOST", "PORT", "DATABASE", "USERNAME", "PASSWORD", "SCHEMA"):
        monkeypatch.delenv(f"QUEUER_DB_{key}", raising=False)
    monkeypatch.setenv("QUEUER_DB_URL", url)
    with new_queuer("params", 1) as q:
        got = _in_force(q)
    for key, value in expected.items():
        assert got.get(key) == value, (key, got)


@pytest.mark.parametrize("variable, value, key, expected", [
    ("PGCONNECT_TIMEOUT", "4", "connect_timeout", "4"),
    ("PGAPPNAME", "from-env", "app", "from-env"),
    ("PGOPTIONS", "-c statement_timeout=999", "server.statement_timeout", "999ms"),
    ("PGTARGETSESSIONATTRS", "read-write", "target_session_attrs", "read-write"),
])
def test_libpqs_own_environment_variables_win_too(monkeypatch, config, variable, value, key, expected):
    _env(monkeypatch, config)
    monkeypatch.setenv(variable, value)
    with new_queuer("pgenv", 1) as q:
        assert _in_force(q).get(key) == expected


def test_a_failover_url_with_connect_timeout_works(config):
    """Two hosts, the first one down, as libpq's docs suggest for failover."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    url = (f"postgresql://postgres@127.0.0.1:{dead},127.0.0.1:{config.port}/postgres"
           "?target_session_attrs=read-write&connect_timeout=2")
    db_config = DatabaseConfiguration.from_url(url)
    assert db_config.port == f"{dead},{config.port}"
    q = new_queuer_with_db("failover-url", 1, None, replace(db_config, schema="failover_url"))
    try:
        q.add_task_with_name(lambda: 42, "answer")
        q.start()
        job = q.add_job("answer")
        assert q.wait_for_job_finished(job.rid, timeout_seconds=20).result == 42
    finally:
        q.stop()


def test_the_command_line_takes_a_url_with_connect_timeout(config):
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("QUEUER_DB_")}
    env["QUEUER_DB_URL"] = _url(config, "connect_timeout=3&application_name=ops")
    env["PYTHONPATH"] = str(ROOT)
    run = subprocess.run([sys.executable, "-m", "queuer", "install"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    run = subprocess.run([sys.executable, "-m", "queuer", "jobs"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr


def test_the_command_line_says_what_to_fix_for_a_wrong_password(config):
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("QUEUER_DB_")}
    env.update(QUEUER_DB_HOST=str(config.host), QUEUER_DB_PORT=str(config.port), QUEUER_DB_DATABASE="postgres",
               QUEUER_DB_USERNAME="secret", QUEUER_DB_PASSWORD="wrong", PYTHONPATH=str(ROOT))
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "queuer", "jobs"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode != 0
    assert "QUEUER_DB_PASSWORD" in run.stderr and "Traceback" not in run.stderr
    assert time.monotonic() - started < 10
