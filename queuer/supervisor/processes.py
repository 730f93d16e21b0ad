"""ProcessSupervisor: ``queuer run FACTORY --processes N``, Python beyond one core.

It starts N worker processes, each a ``queuer run FACTORY`` of its own (so each
calls the factory, handles its signals and drains as one process does), and
restarts one that dies, with backoff, saying why it died. On SIGTERM or SIGINT
it passes the signal on and waits for every process to stop gracefully; one
still running after the shutdown timeout is killed. In drain mode it exits 0
once every process has exited 0 (nothing left to do).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType

from queuer.observability.logs import configure_logging
from queuer.observability.metrics import MetricsServer
from queuer.observability.shared_metrics import METRICS_DIR_VARIABLE, read_shared

log = logging.getLogger("queuer.supervisor")

POLL_SECONDS = 0.1
FIRST_RESTART_DELAY = 1.0
MAX_RESTART_DELAY = 30.0
# A process that ran this long before dying starts its next life with the first delay again.
STABLE_SECONDS = 30.0


def process_count(value: str) -> int:
    """``--processes``: a positive number, or "auto" for the CPU count."""
    if value == "auto":
        return os.cpu_count() or 1
    try:
        count = int(value)
    except ValueError:
        raise ValueError(f"--processes takes a positive number or 'auto', not {value!r}") from None
    if count < 1:
        raise ValueError(f"--processes takes a positive number or 'auto', not {value!r}")
    return count


@dataclass
class _Child:
    index: int
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    delay: float = FIRST_RESTART_DELAY
    restart_at: float | None = None
    done: bool = False  # exited 0: drained, or asked to stop; not restarted
    restarts: int = field(default=0)


def why(returncode: int) -> str:
    """A child's end in words: its exit code, or the signal that killed it."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    return f"exited with code {returncode}"


class ProcessSupervisor:
    def __init__(self, run_args: Sequence[str], processes: int, shutdown_timeout: float, drain: bool,
                 log_level: str = "INFO", metrics_port: int | None = None) -> None:
        # What each process runs: this interpreter's ``queuer run`` with the same options, one process each.
        self.command = [sys.executable, "-m", "queuer", "run", *run_args]
        self.children = [_Child(i) for i in range(processes)]
        self.shutdown_timeout = shutdown_timeout
        self.drain = drain
        self.log_level = log_level
        self.metrics_port = metrics_port
        self._metrics_dir: str | None = None
        self._shutdown = threading.Event()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info("received %s: stopping %d worker processes gracefully", signal.Signals(signum).name,
                 len(self.children))
        self._shutdown.set()

    def run(self) -> int:
        configure_logging(self.log_level)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)
        metrics = None
        if self.metrics_port is not None:
            # One port for all: each process writes its counters here, the scrape sums them.
            self._metrics_dir = tempfile.mkdtemp(prefix="queuer-metrics-")
            folder = self._metrics_dir
            metrics = MetricsServer(self.metrics_port, lambda: read_shared(folder))
            metrics.start()
        for child in self.children:
            self._start(child)
        try:
            while not self._shutdown.wait(POLL_SECONDS):
                self._tend()
                if all(child.done for child in self.children):
                    log.info("every worker process has stopped: exiting")
                    return 0
        finally:
            clean = self._stop_all()
            if metrics is not None:
                metrics.stop()
            if self._metrics_dir is not None:
                shutil.rmtree(self._metrics_dir, ignore_errors=True)
        return 0 if clean else 1

    def _start(self, child: _Child) -> None:
        env = {**os.environ, "QUEUER_WORKER_PROCESS": str(child.index)}
        if self._metrics_dir is not None:
            env[METRICS_DIR_VARIABLE] = self._metrics_dir
        child.proc = subprocess.Popen(self.command, env=env)
        child.started = time.monotonic()
        child.restart_at = None
        log.info("worker process %d started (pid %d)", child.index, child.proc.pid)

    def _tend(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.done:
                continue
            if child.proc is None:
                if child.restart_at is not None and now >= child.restart_at:
                    child.restarts += 1
                    self._start(child)
                continue
            code = child.proc.poll()
            if code is None:
                continue
            if code == 0:
                # Drained, or its worker was asked to stop: that is its end, not a failure.
                log.info("worker process %d (pid %d) %s", child.index, child.proc.pid,
                         "finished: nothing left to do" if self.drain else "stopped as asked")
                child.done = True
                continue
            if now - child.started > STABLE_SECONDS:
                child.delay = FIRST_RESTART_DELAY
            log.warning("worker process %d (pid %d) %s; restarting it in %.0f s (its jobs go back to the queue as "
                        "for any worker that dies)", child.index, child.proc.pid, why(code), child.delay)
            child.proc = None
            child.restart_at = now + child.delay
            child.delay = min(MAX_RESTART_DELAY, child.delay * 2)

    def _stop_all(self) -> bool:
        """Stop every process still running; True when all stopped gracefully (exit code 0)."""
        running = [child.proc for child in self.children if child.proc is not None and child.proc.poll() is None]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.shutdown_timeout + 5.0  # each process's own timeout, and its exit
        clean = True
        for proc in running:
            try:
                clean = proc.wait(max(0.0, deadline - time.monotonic())) == 0 and clean
            except subprocess.TimeoutExpired:
                log.error("worker process (pid %d) did not stop within the shutdown timeout: killing it", proc.pid)
                proc.kill()
                proc.wait()
                clean = False
        return clean
