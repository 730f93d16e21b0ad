"""Pytest fixtures for our own suite, on top of queuer's pytest plugin (``queuer.testing.plugin``).

The plugin finds the session's PostgreSQL (``QUEUER_TEST_DSN``, Docker, local
binaries, the embedded package: see ``queuer.testing.server``). Here it is
started when the report header is printed, so the header says which one is used.

Fixtures:

``pg_server_config``  (session) the server's DatabaseConfiguration, schema "public".
``db_config``         (function) the same, with a fresh schema dropped after the test.
``pg_server``         (session) the TemporaryPostgres when the server is ours, else None.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from queuer.config.database import DatabaseConfiguration
from queuer.testing.plugin import session_database
from queuer.testing.server import fresh_schema
from queuer.tools.postgres_server import TemporaryPostgres

MARKERS = (
    "slow: takes more than a few seconds",
    "crash: kills processes or the database on purpose",
    "load: many jobs over several processes",
    "reliability: the crash-safety suite",
)


# -- pytest hooks ------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)


def pytest_report_header(config: pytest.Config) -> list[str]:
    if config.option.collectonly:
        return ["postgresql: not started (--collect-only)"]
    database = session_database(config)
    try:
        database.get()
    except Exception as exc:
        # The tests that need the database will fail with this error.
        return [f"postgresql: NONE AVAILABLE: {exc}"]
    lines = [f"postgresql: {database.source}"]
    lines += [f"  (skipped {reason.splitlines()[0]})" for reason in database.skipped]
    return lines


# -- fixtures ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_server_config(queuer_server: DatabaseConfiguration) -> DatabaseConfiguration:
    """Where the session's PostgreSQL is, with schema "public"."""
    return queuer_server


@pytest.fixture(scope="session")
def pg_server(request: pytest.FixtureRequest, pg_server_config: DatabaseConfiguration) -> TemporaryPostgres | None:
    """The TemporaryPostgres behind the session's server, or None when it is not ours to restart."""
    return session_database(request.config).server


@pytest.fixture
def db_config(pg_server_config: DatabaseConfiguration) -> Iterator[DatabaseConfiguration]:
    """The session's server with a fresh, empty schema for this test alone."""
    with fresh_schema(pg_server_config) as config:
        yield config


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
