"""The pytest plugin, registered through the ``pytest11`` entry point: fixtures for testing with queuer.

``queuer_server`` (session): a PostgreSQL for the whole test session, found as
``queuer.testing.server`` says (``QUEUER_TEST_DSN``, Docker, local server
binaries, the embedded package) and started on first use only: a session that
never asks for it starts nothing.

``queuer_db`` (function): that server with a fresh, empty schema for this test
alone, dropped afterwards, and ``QUEUER_DB_*`` set to it, so
``queuer.new_queuer(...)`` and the user's own factories find it by themselves.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from queuer.config.database import DatabaseConfiguration
from queuer.testing.server import SessionDatabase, environment, fresh_schema

SESSION_DATABASE = pytest.StashKey[SessionDatabase]()


def session_database(config: pytest.Config) -> SessionDatabase:
    """The test session's database finder (its server starts on the first ``get()``)."""
    return config.stash[SESSION_DATABASE]


def pytest_configure(config: pytest.Config) -> None:
    config.stash[SESSION_DATABASE] = SessionDatabase()


def pytest_unconfigure(config: pytest.Config) -> None:
    database = config.stash.get(SESSION_DATABASE, None)
    if database is not None:
        database.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    database = config.stash.get(SESSION_DATABASE, None)
    if database is not None and database.started:
        terminalreporter.write_line(f"queuer: the tests used {database.source}")


@pytest.fixture(scope="session")
def queuer_server(request: pytest.FixtureRequest) -> DatabaseConfiguration:
    """The session's PostgreSQL, schema "public"; started the first time a test asks."""
    return session_database(request.config).get()


@pytest.fixture
def queuer_db(queuer_server: DatabaseConfiguration, monkeypatch: pytest.MonkeyPatch) -> Iterator[DatabaseConfiguration]:
    """A fresh schema for this test, with ``QUEUER_DB_*`` pointing at it while the test runs."""
    with fresh_schema(queuer_server, prefix="test_") as config:
        for name in list(os.environ):
            if name.startswith("QUEUER_DB_"):
                monkeypatch.delenv(name)
        for name, value in environment(config).items():
            monkeypatch.setenv(name, value)
        yield config
