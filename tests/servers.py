"""PostgreSQL servers of a test's own, for tests that restart, reconfigure or read the log of one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import psycopg
import pytest

from queuer.tools.postgres_server import TemporaryPostgres, find_local_bin_dir


def own_server(*, listen: str | None = None, hba_first: Sequence[str] = (),
               settings: Mapping[str, str] | None = None) -> TemporaryPostgres:
    """A fresh server from local binaries; ``hba_first`` lines are put before initdb's (first match wins)."""
    if find_local_bin_dir() is None:
        pytest.skip("needs PostgreSQL server binaries (/usr/lib/postgresql/*/bin)")
    extra = dict(settings or {})
    if listen:
        extra["listen_addresses"] = f"127.0.0.1,{listen}"
    server = TemporaryPostgres("local", extra)
    server.start()
    if hba_first:
        assert server.data_dir is not None and server.config is not None
        hba = server.data_dir / "pg_hba.conf"
        hba.write_text("\n".join(hba_first) + "\n" + hba.read_text())
        with psycopg.connect(**server.config.connect_kwargs(), autocommit=True) as conn:
            conn.execute("SELECT pg_reload_conf()")
    return server


def log_lines(server: TemporaryPostgres, containing: str) -> list[str]:
    assert server.log_file is not None
    return [line for line in server.log_file.read_text(errors="replace").splitlines() if containing in line]
