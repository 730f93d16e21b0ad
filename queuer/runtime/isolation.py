"""Running a suspect's attempt in a process of its own.

A job that was running beside other jobs when its worker died may be the one
that killed it. It runs again in a child forked for it alone, on one of the
worker's threads like any other job: a crash then ends only that child and is
the job's own, while the worker and its other jobs go on. The outcome comes
back to the worker through a pipe; a cancel or a timeout kills the child.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pickle
import select
import signal
import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any

from queuer.model.rows import CRASHED, Outcome
from queuer.runtime.attempt import Attempt

# How often a waiting thread looks at the attempt's cancel flag and at the child.
POLL_SECONDS = 0.05
PR_SET_PDEATHSIG = 1  # linux/prctl.h

# Python 3.12 warns at every fork of a process that has threads. The child here
# runs only the task on the forking thread, and the objects it may use start
# over after a fork (the connection pool, logging's locks).
warnings.filterwarnings("ignore", message=r".*multi-threaded.*fork", category=DeprecationWarning,
                        module=__name__)


def _prctl() -> Callable[..., int] | None:
    """libc's prctl, looked up in the parent: the child must not load libraries."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
        return prctl
    except (OSError, AttributeError):
        return None


class ProcessIsolation:
    """Forks a child per attempt, runs it there, and says how the child ended."""

    def __init__(self) -> None:
        self.available = hasattr(os, "fork")
        # A pipe's write end must be open in its child only, or EOF would wait for
        # every child forked meanwhile: pipe, fork and closing it happen under one lock.
        self._fork_lock = threading.Lock()
        self._prctl = _prctl()

    def run(self, attempt: Attempt, run: Callable[[Attempt], Outcome]) -> Outcome | None:
        """``run(attempt)`` in a child: its Outcome, a CRASHED one when the child died without one, or None when
        the attempt was cancelled meanwhile (the child was killed for it)."""
        parent = os.getpid()
        with self._fork_lock:
            read_end, write_end = os.pipe()
            pid = os.fork()
            if pid == 0:
                self._child(attempt, run, parent, read_end, write_end)
            os.close(write_end)
        try:
            data, status = self._wait(pid, read_end, attempt)
        finally:
            os.close(read_end)
        outcome = _decoded(data) if status == 0 else None
        if outcome is not None:
            return outcome
        if attempt.context.is_cancelled():
            return None  # killed for its cancel or timeout, which already ended the attempt
        job = attempt.job
        return Outcome(job.id, job.attempt, CRASHED, error=_how_it_died(status, pid))

    def _child(self, attempt: Attempt, run: Callable[[Attempt], Outcome], parent: int, read_end: int,
               write_end: int) -> None:
        """In the child: run the attempt, send its outcome, exit; never return into the worker's code."""
        status = 1
        try:
            os.close(read_end)
            # Stopping is the worker's: it waits for the job as for a thread, then kills the child.
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            if self._prctl is not None:
                self._prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # the worker gone: so is this run
            if os.getppid() != parent:
                return  # it died before the line above
            data = pickle.dumps(run(attempt))
            view = memoryview(data)
            while view:
                view = view[os.write(write_end, view):]
            status = 0
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os._exit(status)

    @staticmethod
    def _wait(pid: int, read_end: int, attempt: Attempt) -> tuple[bytes, int]:
        """Read the child's outcome while it runs; kill it when the attempt is cancelled. Return what it sent
        and its wait status."""
        chunks: list[bytes] = []
        killed = False
        reading = True
        while True:
            if not killed and attempt.context.is_cancelled():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                killed = True
            if reading:
                ready, _, _ = select.select([read_end], [], [], POLL_SECONDS)
                if ready:
                    chunk = os.read(read_end, 1 << 16)
                    if chunk:
                        chunks.append(chunk)
                        continue
                    reading = False  # EOF: the child is done or dead
            done, status = os.waitpid(pid, 0 if not reading else os.WNOHANG)
            if done:
                # A process the task forked may hold the pipe open: read what is there and stop.
                os.set_blocking(read_end, False)
                with contextlib.suppress(BlockingIOError):
                    while chunk := os.read(read_end, 1 << 16):
                        chunks.append(chunk)
                return b"".join(chunks), status


def _decoded(data: bytes) -> Outcome | None:
    try:
        outcome: Any = pickle.loads(data)
    except Exception:
        return None
    return outcome if isinstance(outcome, Outcome) else None


def _how_it_died(status: int, pid: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        cause = f"was killed by {name}"
        if -code == signal.SIGKILL:
            cause += " (the kernel's out-of-memory killer sends SIGKILL too)"
        elif -code == signal.SIGSEGV:
            cause += " (a crash in native code)"
    else:
        cause = f"exited with status {code}"
    return f"the process it ran in alone (pid {pid}) {cause} before the task returned"

