"""PostgreSQL servers of a test's own, for tests that restart, reconfigure or read the log of one."""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import psycopg
import pytest

from queuer.config.ports import free_port
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


def restart(server: TemporaryPostgres, mode: Literal["fast", "immediate", "smart"] = "fast",
            while_down: Callable[[], None] | None = None) -> None:
    """Stop the server and start it again on the same data and port: every client connection is cut.

    ``mode="immediate"`` is a server crash (recovery runs on start); with the throwaway
    server's ``synchronous_commit=off`` that loses the last few hundred milliseconds of
    commits, so tests that count rows across a restart keep the default.
    ``while_down`` runs while the server is stopped: an outage as long as it.
    """
    server.shut_down(mode)
    try:
        if while_down is not None:
            while_down()
    finally:
        server.start_again()


def kill(server: TemporaryPostgres) -> None:
    """Stop the server at once, as a crash would; its files are kept."""
    server.shut_down("immediate")


def promote(replica: TemporaryPostgres) -> None:
    """Make a replica the primary, returning once it accepts writes."""
    assert replica.data_dir is not None
    code = replica.run_tool("pg_ctl", "promote", "-w", "-t", "30", "-D", str(replica.data_dir), timeout=40)
    assert code == 0, f"pg_ctl promote failed (exit code {code})"


def start_replica(primary: TemporaryPostgres) -> TemporaryPostgres:
    """A streaming replica of a local server on a port of its own (``pg_basebackup -R``); stop it like any."""
    assert primary.source == "local" and primary.config is not None
    replica = TemporaryPostgres("local", primary.settings, startup_timeout=primary.startup_timeout)
    # The steps of start() for a data directory that pg_basebackup fills instead of initdb.
    replica._use_local(primary.bin_dir)
    try:
        code = replica.run_tool(
            "pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.config.port), "-U", "postgres",
            "-D", str(replica.data_dir), "-R", "-X", "stream", "--no-sync", timeout=primary.startup_timeout)
        assert code == 0, f"pg_basebackup failed (exit code {code})"
        replica._pg_ctl_start(free_port())
    except BaseException:
        replica._discard_failed_start()
        raise
    replica._owner_pid = os.getpid()
    atexit.register(replica._stop_at_exit)
    return replica
