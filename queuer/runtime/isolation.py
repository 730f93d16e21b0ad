"""Running a suspect's attempt in a process of its own.

A job that was running beside other jobs when its worker died may be the one
that killed it. It runs again in a child forked for it alone, on one of the
worker's threads like any other job: a crash then ends only that child and is
the job's own, while the worker and its other jobs go on. The outcome comes
back to the worker through a pipe; a cancel or a timeout kills the child and
whatever it started (it leads a process group of its own).

The child is a fork of a process with threads: it runs only the task, on the
forking thread, and exits without running the interpreter's shutdown. What it
may use starts over after a fork (queuer's connections, notifier and event
waiters, logging's locks) or is made anew in it (stdout, stderr and logging's
streams); the user's own resources are shared with it as with any fork (see
the Reliability guide).
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import logging
import os
import pickle
import select
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

from queuer.model.rows import CRASHED, SNOOZE, Outcome
from queuer.runtime.attempt import Attempt

log = logging.getLogger("queuer.worker")

# How often a waiting thread looks at the attempt's cancel flag and at the child.
POLL_MILLISECONDS = 50
PR_SET_PDEATHSIG = 1  # linux/prctl.h
# A suspect for which no process could be had runs again after this long (no retry spent).
FORK_FAILED_RETRY_SECONDS = 1.0

# Python 3.12 warns at every fork of a process that has threads; see the module's docstring.
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


def _own_streams() -> None:
    """In the child: stdout, stderr and the logging handlers writing to files get streams of their own over
    the same descriptors. An inherited buffered stream is unusable: its lock (not reset at a fork) may have
    been held by a thread that was writing, and what it had buffered is the parent's to write."""
    fresh: dict[int, io.TextIOWrapper] = {}

    def own(stream: Any) -> Any:
        try:
            fd = stream.fileno()
        except (AttributeError, ValueError, OSError):
            return stream  # not over a descriptor (a StringIO, a test's capture): nothing shared
        if id(stream) not in fresh:
            fresh[id(stream)] = io.TextIOWrapper(
                io.FileIO(fd, "w", closefd=False), encoding=getattr(stream, "encoding", None) or "utf-8",
                errors=getattr(stream, "errors", None) or "backslashreplace", line_buffering=True,
                write_through=True)
        return fresh[id(stream)]

    sys.stdout, sys.stderr = own(sys.stdout), own(sys.stderr)
    handlers = list(logging.getLogger().handlers)
    for logger in list(logging.Logger.manager.loggerDict.values()):
        handlers += getattr(logger, "handlers", [])
    for handler in handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.stream = own(handler.stream)  # assigned: setStream() would flush the inherited one


def _ignore(signum: int, frame: Any) -> None:
    """The child's SIGTERM and SIGINT handler: stopping is the worker's. A handler, not SIG_IGN,
    so that a program the task runs (exec) gets the default actions back."""


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
        try:
            with self._fork_lock:
                read_end, write_end = os.pipe()
                try:
                    pid = os.fork()
                    if pid == 0:
                        self._child(attempt, run, parent, read_end, write_end)
                    with contextlib.suppress(OSError):
                        os.setpgid(pid, pid)  # as the child does: whichever runs first, a kill finds the group
                except BaseException:
                    os.close(read_end)
                    raise
                finally:
                    if os.getpid() == parent:
                        os.close(write_end)
        except OSError as exc:  # no process to be had now (EAGAIN, ENOMEM, EMFILE): again shortly, nothing spent
            log.warning("could not start a process for suspect job %s (%s); it runs again in %.0f s",
                        attempt.job.rid, exc, FORK_FAILED_RETRY_SECONDS)
            return Outcome(attempt.job.id, attempt.job.attempt, SNOOZE, retry_delay=FORK_FAILED_RETRY_SECONDS)
        try:
            data, status = self._wait(pid, read_end, attempt)
        finally:
            os.close(read_end)
        outcome = _decoded(data) if status is None or status == 0 else None
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
            _own_streams()
            os.setpgid(0, 0)  # a group of its own: a kill reaches what the task started too
            signal.signal(signal.SIGTERM, _ignore)
            signal.signal(signal.SIGINT, _ignore)
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
                    stream.flush()  # the child's own streams (see _own_streams)
            os._exit(status)

    @staticmethod
    def _wait(pid: int, read_end: int, attempt: Attempt) -> tuple[bytes, int | None]:
        """Read the child's outcome while it runs; kill its group when the attempt is cancelled. Return what it
        sent and its wait status (None: not known, the child was reaped by someone else)."""
        chunks: list[bytes] = []
        killed = False
        poller = select.poll()  # not select(): no limit on the descriptor's number
        poller.register(read_end, select.POLLIN)
        reading = True
        while True:
            if not killed and attempt.context.is_cancelled():
                _kill_group(pid)
                killed = True
            if reading and poller.poll(POLL_MILLISECONDS):
                chunk = os.read(read_end, 1 << 16)
                if chunk:
                    chunks.append(chunk)
                    continue
                reading = False  # EOF: the child is done or dead
            elif not reading:
                time.sleep(POLL_MILLISECONDS / 1000)  # closed its end early: still killable meanwhile
            try:
                ended = _ended(pid)
            except ChildProcessError:  # SIGCHLD ignored in this process: reaped already, its group unknown
                return _drained(read_end, chunks), None
            if ended is not None:
                clean, status = ended
                # A process the task forked may hold the pipe open: read what is there and stop.
                data = _drained(read_end, chunks)
                if killed or not clean:
                    _kill_group(pid)  # what the task started goes with it (the unreaped child keeps the group's id)
                if status is None:
                    try:
                        status = os.waitpid(pid, 0)[1]
                    except ChildProcessError:
                        pass
                return data, status


def _ended(pid: int) -> tuple[bool, int | None] | None:
    """None while the child runs; once it has ended, whether it exited with 0 and, if it was reaped here, its
    wait status. Left unreaped where the system allows it (waitid), so that its pid, and the id of its
    group, cannot be another's until it is."""
    if hasattr(os, "waitid"):
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        return None if info is None else (info.si_code == os.CLD_EXITED and info.si_status == 0, None)
    done, status = os.waitpid(pid, os.WNOHANG)
    return None if not done else (status == 0, status)


def _drained(read_end: int, chunks: list[bytes]) -> bytes:
    os.set_blocking(read_end, False)
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(read_end, 1 << 16):
            chunks.append(chunk)
    return b"".join(chunks)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _decoded(data: bytes) -> Outcome | None:
    try:
        outcome: Any = pickle.loads(data)
    except Exception:
        return None
    return outcome if isinstance(outcome, Outcome) else None


def _how_it_died(status: int | None, pid: int) -> str:
    if status is None:
        cause = "ended without an outcome (its exit status is unknown: this process ignores SIGCHLD)"
    else:
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
        cause += " before the task returned"
    return f"the process it ran in alone (pid {pid}) {cause}"
