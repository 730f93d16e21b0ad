"""Shared helpers for the tests: fast worker settings, waiting with deadlines, worker processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import psycopg

from queuer import WorkerSettings
from queuer.config.database import DatabaseConfiguration
from queuer.testing.server import environment

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent

FAST = WorkerSettings(
    poll_interval=0.5,
    heartbeat_interval=0.25,
    dead_after=2.0,
    master_lease=1.0,
    shutdown_timeout=10.0,
)


def wait_until(condition: Callable[[], T], timeout: float = 20.0, interval: float = 0.02, message: str = "") -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message or condition}")
        time.sleep(interval)


def read_lines_until(proc: subprocess.Popen[bytes], done: Callable[[list[str]], bool], timeout: float = 30.0) -> list[str]:
    """Read a process's output lines until ``done(lines)``; fail after ``timeout`` seconds.

    A reader thread (one per process, kept on it) feeds a queue, so lines that
    arrive together are never stuck in a buffer a select() cannot see.
    """
    import queue
    import threading

    lines_queue: queue.Queue[str | None] | None = getattr(proc, "_line_queue", None)
    if lines_queue is None:
        lines_queue = queue.Queue()
        proc._line_queue = lines_queue  # type: ignore[attr-defined]
        proc._lines = []  # type: ignore[attr-defined]

        def pump() -> None:
            assert proc.stdout is not None
            for raw in proc.stdout:
                lines_queue.put(raw.decode().rstrip())
            lines_queue.put(None)

        threading.Thread(target=pump, daemon=True).start()
    lines: list[str] = proc._lines  # type: ignore[attr-defined]
    deadline = time.monotonic() + timeout
    while not done(lines):
        try:
            line = lines_queue.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"timed out after {timeout}s; output so far: {lines}") from None
        if line is None:
            raise AssertionError(f"the process ended; output: {lines}")
        lines.append(line)
    return lines


def db_env(config: DatabaseConfiguration) -> dict[str, str]:
    """Environment variables that point a subprocess at ``config``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUEUER_DB_")}
    env.update(environment(config))
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def start_worker_process(config: DatabaseConfiguration, *args: str, **env: str) -> subprocess.Popen[bytes]:
    """Run ``tests/worker_process.py`` as a separate OS process."""
    return subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "worker_process.py"), *args],
        env={**db_env(config), **env},
        cwd=str(ROOT),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def process_gone(pid: int) -> bool:
    """No process has this pid (a zombie still counts as there: its parent has not reaped it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def sql(config: DatabaseConfiguration, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Run one statement on a fresh connection (autocommit) and return its rows."""
    with psycopg.connect(**config.connect_kwargs(), autocommit=True) as conn:
        cur = conn.execute(query.replace("{schema}", f'"{config.schema}"'), params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def count(config: DatabaseConfiguration, query: str, params: Any = None) -> int:
    return int(sql(config, query, params)[0][0])
