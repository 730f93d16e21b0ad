"""Dispatcher: the local job buffer and the thread pool that runs tasks.

Claimed attempts wait in a FIFO buffer (claim order = priority order);
``max_concurrency`` job threads pop the next one whenever they are free. An
attempt that has not started can therefore be taken back (released) at
shutdown or on cancel.

The first outcome of an attempt wins locally: a timeout or cancellation ends
the attempt at once, and whatever the task returns later is discarded.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import queue
import threading
import time
import traceback
from bisect import bisect_left
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from itertools import accumulate
from typing import Any
from uuid import UUID

from queuer.database.job_db import ClaimedJob, Outcome
from queuer.errors import EncryptionError
from queuer.model.context import JobContext, reset_current, set_current
from queuer.model.options import OnError
from queuer.model.task import Task
from queuer.observability import tracing
from queuer.payload.encryption import Keyring
from queuer.payload.serialization import MAX_NESTING, Undecodable, storable_size, to_json
from queuer.runtime.prefetch import PrefetchSizer

log = logging.getLogger("queuer.worker")


RUN_TIME_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, float("inf"))


@dataclass
class RunTimes:
    """Task run times in buckets (for the Prometheus histogram)."""

    per_bucket: list[int] = field(default_factory=lambda: [0] * len(RUN_TIME_BUCKETS))
    total: float = 0.0

    def add(self, seconds: float) -> None:
        self.total += seconds
        self.per_bucket[bisect_left(RUN_TIME_BUCKETS, seconds)] += 1

    @property
    def counts(self) -> list[int]:
        """Cumulative counts, as a histogram reports them: runs that took at most each bound."""
        return list(accumulate(self.per_bucket))


@dataclass
class Attempt:
    job: ClaimedJob
    context: JobContext
    on_error: OnError | None
    state: str = "buffered"  # buffered -> running -> ended
    alone: bool = False  # a suspect: nothing else runs on this worker meanwhile
    deadline: float | None = None  # time.monotonic() after which it times out
    thread_busy: bool = field(default=False)


class Dispatcher:
    def __init__(
        self,
        tasks: Mapping[str, Task],
        max_concurrency: int,
        prefetch: int | None,
        on_outcome: Callable[[Outcome], None],
        on_capacity: Callable[[], None],
        default_on_error: OnError | None,
        resources: Mapping[str, Any],
        next_interval_funcs: Mapping[str, Callable[[datetime, int], datetime]] | None = None,
        keyring: Keyring | None = None,
        confirm_start: Callable[[int, int, bool], bool] | None = None,
        max_result_bytes: int = 1024 * 1024,
        threads: bool = True,
        passthrough: tuple[type[BaseException], ...] = (),
    ) -> None:
        self.tasks = tasks
        self.max_concurrency = max_concurrency
        self.sizer = PrefetchSizer(max_concurrency, prefetch)
        self._on_outcome = on_outcome
        self._on_capacity = on_capacity
        self.default_on_error = default_on_error
        self.resources = resources
        self.next_interval_funcs = next_interval_funcs if next_interval_funcs is not None else {}
        self.keyring = keyring
        self._confirm_start = confirm_start
        self.max_result_bytes = max_result_bytes
        # Exceptions a task raises that end the caller's run instead of failing the job
        # (the test kit's drain: Ctrl-C, a pytest timeout).
        self._passthrough = passthrough
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        # The buffer is a SimpleQueue: a job thread waits on it in C, holding no
        # Python lock, so a busy worker's many threads do not queue on one lock.
        # An attempt ended while buffered stays in it, marked, and is skipped.
        self._buffer: queue.SimpleQueue[Attempt | None] = queue.SimpleQueue()
        self._attempts: dict[int, Attempt] = {}  # job id -> attempt, buffered or running
        self._busy_threads = 0
        self._alone = 0  # attempts of suspects held here: while any, nothing else is claimed
        self.run_times = RunTimes()
        self._tracing = tracing.Switch()
        self.started_total = 0  # attempts begun on a job thread (claims that were released are not)
        self._loops = threading.local()
        self.accepting = True
        # Job threads of our own rather than a ThreadPoolExecutor: they pop the
        # buffer directly, with no Future per job, and a buffered attempt can
        # still be taken back until a thread pops it.
        self._threads = [
            threading.Thread(target=self._work_loop, name=f"queuer-job-{i}", daemon=True)
            for i in range(max_concurrency if threads else 0)
        ]
        for thread in self._threads:
            thread.start()

    # -- capacity -------------------------------------------------------------

    def capacity(self) -> int:
        """How many more attempts this worker can take (free threads + prefetch)."""
        with self._lock:
            if self._alone:
                return 0  # a suspect runs alone
            return self.max_concurrency + self.sizer.target - self._buffer.qsize() - self._busy_threads

    def worth_claiming(self) -> int:
        """The smallest claim worth a round trip: half the buffer, so claims come in batches."""
        return max(1, self.sizer.target // 2)

    def idle(self) -> bool:
        """Nothing buffered and nothing running: a suspect may be claimed to run alone."""
        with self._lock:
            return not self._attempts and self._busy_threads == 0

    def busy(self) -> int:
        with self._lock:
            return self._busy_threads

    def running(self) -> list[tuple[int, int]]:
        """(job id, attempt) of every attempt running on a thread."""
        with self._lock:
            return [(a.job.id, a.job.attempt) for a in self._attempts.values() if a.state == "running"]

    def held(self) -> list[tuple[int, int]]:
        """(job id, attempt) of every attempt buffered or running here."""
        with self._lock:
            return [(a.job.id, a.job.attempt) for a in self._attempts.values() if a.state != "ended"]

    # -- intake -----------------------------------------------------------------

    def submit(self, jobs: list[ClaimedJob], alone: bool = False) -> None:
        attempts = []
        for job in jobs:
            try:
                on_error = self._policy_of(job)
            except (TypeError, ValueError, AttributeError) as exc:
                # A row edited into an invalid state fails alone; the worker goes on.
                self._on_outcome(Outcome(job.id, job.attempt, "FAILED",
                                         error=f"InvalidJobError: the job's options are invalid ({exc})"))
                continue
            ctx = JobContext(
                id=job.id,
                rid=job.rid,
                task_name=job.task_name,
                attempt=job.attempt,
                max_attempts=job.max_attempts,
                parameters=job.parameters,
                parameters_keyed=job.parameters_keyed,
                resources=self.resources,
            )
            attempts.append(Attempt(job, ctx, on_error, alone=alone))
        with self._lock:
            for attempt in attempts:
                self._attempts[attempt.job.id] = attempt
                self._alone += attempt.alone
        for attempt in attempts:
            self._buffer.put(attempt)

    def _policy_of(self, job: ClaimedJob) -> OnError | None:
        if job.options is not None and not isinstance(job.options, dict):
            raise TypeError("options must be a JSON object")
        stored = job.options.get("on_error") if job.options else None
        return OnError.from_dict(stored) if stored else self.default_on_error

    def take_back_unstarted(self) -> list[tuple[int, int]]:
        """Remove every attempt that has not started; return their fencing identities."""
        taken: list[Attempt] = []
        with self._lock:
            while True:
                try:
                    attempt = self._buffer.get_nowait()
                except queue.Empty:
                    break
                if attempt is None or attempt.state != "buffered":
                    continue
                attempt.state = "ended"
                self._forget(attempt)
                taken.append(attempt)
        return [(a.job.id, a.job.attempt) for a in taken]

    # -- running ----------------------------------------------------------------

    def _work_loop(self) -> None:
        """One of ``max_concurrency`` job threads: run buffered attempts in claim order."""
        while True:
            attempt = self._buffer.get()
            if attempt is None:  # shutdown
                self.close_event_loop()
                return
            if self._begin(attempt):
                self._run(attempt)

    def run_here(self) -> None:
        """Run every buffered attempt in the calling thread, in claim order (for a dispatcher
        made with ``threads=False``: the test kit's ``drain``)."""
        while True:
            try:
                attempt = self._buffer.get_nowait()
            except queue.Empty:
                return
            if attempt is not None and self._begin(attempt):
                self._run(attempt)

    def _begin(self, attempt: Attempt) -> bool:
        """Mark a popped attempt running; False when it ended while it waited."""
        with self._lock:
            if attempt.state != "buffered":
                return False  # cancelled or taken back while it waited
            attempt.state = "running"
            attempt.thread_busy = True
            self._busy_threads += 1
            self.started_total += 1
            timeout = attempt.job.timeout_seconds
            attempt.deadline = time.monotonic() + timeout if timeout else None
        return True

    def _forget(self, attempt: Attempt) -> None:
        """Drop an attempt from the ones held here (under the lock)."""
        if self._attempts.pop(attempt.job.id, None) is attempt:
            self._alone -= attempt.alone

    def _may_start(self, attempt: Attempt) -> bool:
        """A job that has been through a crash records its start first (see the README's "Guarantees")."""
        if attempt.job.rescues == 0 or self._confirm_start is None:
            return True
        try:
            return self._confirm_start(attempt.job.id, attempt.job.attempt, attempt.alone)
        except Exception as exc:  # the database is away: run it; a crash now is simply not charged
            log.warning("could not record the start of job %s (%s); running it anyway", attempt.job.rid, exc)
            return True

    def _run(self, attempt: Attempt) -> None:
        if not self._may_start(attempt):
            log.info("job %s attempt %d was taken from this worker before it started; skipped",
                     attempt.job.rid, attempt.job.attempt)
            self._free_thread(attempt, None)
            return
        started = time.perf_counter()
        outcome: Outcome | None = None
        try:
            if self._tracing.on():
                with tracing.processing(attempt.job, self._tracing.tracer) as span:
                    outcome = self._execute(attempt)
                    tracing.set_outcome(span, outcome, attempt.context)
            else:
                outcome = self._execute(attempt)
        finally:
            self._free_thread(attempt, time.perf_counter() - started, outcome)

    def _free_thread(self, attempt: Attempt, run_time: float | None, outcome: Outcome | None = None) -> None:
        """The attempt's thread is free again: record its outcome (if it still counts), wake the poller."""
        with self._lock:
            if run_time is not None:
                self.run_times.add(run_time)
                self.sizer.finished(run_time)
            else:
                self.started_total -= 1  # taken from us before it began
            self._busy_threads -= 1
            attempt.thread_busy = False
            first = attempt.state == "running"
            attempt.state = "ended"
            if self._attempts.get(attempt.job.id) is attempt:
                self._forget(attempt)
            # Claim ahead: ask for more while half the buffer is still there to run.
            refill = self._buffer.qsize() <= self.sizer.target // 2
            if self._busy_threads == 0:
                self._idle.notify_all()
        if outcome is not None and first:
            if outcome.status in ("SUCCEEDED", "FAILED"):
                outcome = self._with_next_run(attempt, outcome)
            self._on_outcome(outcome)
        elif outcome is not None:
            log.info(
                "job %s attempt %d returned after it had already ended (%s); its result is discarded",
                attempt.job.rid, attempt.job.attempt, attempt.context.cancel_reason or "ended",
            )
        if refill:
            self._on_capacity()

    def _execute(self, attempt: Attempt) -> Outcome:
        job = attempt.job
        task = self.tasks.get(job.task_name)
        if task is None:  # claimed only for registered tasks, but a task can be removed
            error = f"TaskNotRegisteredError: task {job.task_name!r} is not registered on this worker"
            return self._failure(attempt, error, retry=False)
        if job.arguments_enc is not None:
            try:
                self._open_arguments(job)
            except EncryptionError as exc:
                return self._failure(attempt, f"EncryptionError: {exc}", retry=False)
        for arguments in (job.parameters, job.parameters_keyed):
            if isinstance(arguments, Undecodable):
                error = (f"InvalidJobError: the job's stored arguments cannot be decoded ({arguments.reason}); "
                         f"arguments may nest at most {MAX_NESTING} levels")
                return self._failure(attempt, error, retry=False)
        if not isinstance(job.parameters, list) or not isinstance(job.parameters_keyed, dict):
            error = ("InvalidJobError: parameters must be a JSON array and parameters_keyed a JSON object; "
                     f"got {type(job.parameters).__name__} and {type(job.parameters_keyed).__name__}")
            return self._failure(attempt, error, retry=False)
        token = set_current(attempt.context)
        try:
            result = task.fn(*job.parameters, **job.parameters_keyed)
            # Not only ``async def``: a decorated coroutine function returns a coroutine too.
            if asyncio.iscoroutine(result):
                result = self._run_coroutine(attempt, result)
        except BaseException as exc:
            if isinstance(exc, self._passthrough):
                raise
            tracing.record_exception(exc)
            error = f"{type(exc).__name__}: {exc}\n" + "".join(traceback.format_exception(exc))
            # Arguments that do not fit the task's signature fail the call itself (no frame of
            # the task in the traceback): that fails the same way every time, so no retry.
            mismatch = isinstance(exc, TypeError) and exc.__traceback__ is not None and exc.__traceback__.tb_next is None
            return self._failure(attempt, error, retry=not mismatch)
        finally:
            reset_current(token)
        try:
            results = to_json(result, f"the result of task {job.task_name!r}")
            size = storable_size(results, f"the result of task {job.task_name!r}")
            if size > self.max_result_bytes:
                raise ValueError(
                    f"the result of task {job.task_name!r} is {size:,} bytes of JSON, over the limit of "
                    f"{self.max_result_bytes:,} (WorkerSettings.max_payload_bytes); store large data "
                    "elsewhere and return a reference")
        except (TypeError, ValueError) as exc:
            return self._failure(attempt, f"{type(exc).__name__}: {exc}", retry=False)
        if self.keyring is not None:
            sealed = self.keyring.encrypt(results.encode(), job.rid, "results")
            return Outcome(job.id, job.attempt, "SUCCEEDED", results=None, results_enc=sealed)
        return Outcome(job.id, job.attempt, "SUCCEEDED", results=results)

    def _open_arguments(self, job: ClaimedJob) -> None:
        """Decrypt the job's arguments in place; EncryptionError when this worker cannot."""
        if self.keyring is None:
            raise EncryptionError("the job's arguments are encrypted and this worker has no key: "
                                  "set QUEUER_ENCRYPTION_KEY")
        assert job.arguments_enc is not None
        opened = json.loads(self.keyring.decrypt(job.arguments_enc, job.binding, "arguments"))
        job.parameters, job.parameters_keyed = opened["p"], opened["k"]

    def _with_next_run(self, attempt: Attempt, outcome: Outcome) -> Outcome:
        """A recurring job driven by a next-interval function: ask it for the next run's time."""
        job = attempt.job
        schedule = job.options.get("schedule") if job.options else None
        name = schedule.get("next_interval") if schedule else None
        if not name:
            return outcome  # none, or a fixed interval: the database computes the next run
        fn = self.next_interval_funcs.get(name)
        if fn is None:
            log.error("job %s: next-interval function %r is not registered on this worker; "
                      "its schedule ends here (register it with add_next_interval_func)", job.rid, name)
            return outcome
        assert schedule is not None  # a next-interval name comes from it
        anchor = datetime.fromisoformat(schedule["start"]) if schedule.get("start") else job.created_at
        try:
            next_at = fn(anchor, job.schedule_count + 1)
            if not isinstance(next_at, datetime):
                raise TypeError(f"returned {type(next_at).__name__}, not a datetime")
            if next_at.tzinfo is None:
                next_at = next_at.astimezone()
        except Exception:
            log.exception("job %s: next-interval function %r failed; its schedule ends here", job.rid, name)
            return outcome
        return replace(outcome, next_at=next_at)

    def _failure(self, attempt: Attempt, error: str, retry: bool = True) -> Outcome:
        # Only failures spend retries: attempts cut short by crashes are not counted here.
        job = attempt.job
        failure = job.failures + 1
        if retry and failure < job.max_attempts:
            delay = attempt.on_error.retry_delay_after(failure) if attempt.on_error else 0.0
            return Outcome(job.id, job.attempt, "RETRY", error=error, retry_delay=delay)
        return Outcome(job.id, job.attempt, "FAILED", error=error)

    def _run_coroutine(self, attempt: Attempt, coroutine: Any) -> Any:
        """Run an async task on this thread's loop; a cancel or timeout interrupts it at its next await."""
        if _loop_running_here():  # drain called from async code (an async test): not on its loop
            return run_coroutine_once(attempt.context, coroutine)
        return run_coroutine(self._event_loop(), attempt.context, coroutine)

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        # One event loop per worker thread, reused by every async task it runs.
        loop = getattr(self._loops, "loop", None)
        if loop is None or loop.is_closed():
            loop = asyncio.new_event_loop()
            self._loops.loop = loop
        return loop

    def close_event_loop(self) -> None:
        """Close the calling thread's event loop, if it has one (an open one warns when collected)."""
        loop = getattr(self._loops, "loop", None)
        self._loops.loop = None
        if loop is not None and not loop.is_closed():
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    # -- ending attempts early ----------------------------------------------------

    def end_attempt(self, job_id: int, reason: str, outcome: Outcome | None) -> bool:
        """End an attempt now (cancel, timeout, lost): set its flag, record ``outcome``.

        A buffered attempt is dropped before it starts. A running one keeps its
        thread until the task returns (Python cannot kill a thread), but its
        result will be discarded.
        """
        with self._lock:
            attempt = self._attempts.get(job_id)
            if attempt is None:
                return False
            self._forget(attempt)
            if attempt.state == "ended":
                return False
            still_running = attempt.thread_busy
            attempt.state = "ended"
        attempt.context.cancel(reason)
        if outcome is not None:
            self._on_outcome(outcome)
        if still_running:
            log.warning(
                "job %s (%s) attempt %d ended: %s; its thread keeps running and "
                "holds 1 of %d slots until the task returns",
                attempt.job.rid, attempt.job.task_name, attempt.job.attempt, reason, self.max_concurrency,
            )
        self._on_capacity()
        return True

    def attempt_for_rid(self, rid: UUID) -> Attempt | None:
        with self._lock:
            for attempt in self._attempts.values():
                if attempt.job.rid == rid:
                    return attempt
        return None

    def expire_timeouts(self) -> float | None:
        """End attempts past their deadline; return seconds until the next deadline."""
        now = time.monotonic()
        expired: list[Attempt] = []
        next_deadline: float | None = None
        with self._lock:
            for attempt in self._attempts.values():
                if attempt.state != "running" or attempt.deadline is None:
                    continue
                if attempt.deadline <= now:
                    expired.append(attempt)
                elif next_deadline is None or attempt.deadline < next_deadline:
                    next_deadline = attempt.deadline
        for attempt in expired:
            timeout = attempt.job.timeout_seconds
            error = f"TimeoutError: attempt {attempt.job.attempt} ran longer than its timeout of {timeout:g} s"
            self.end_attempt(attempt.job.id, f"timed out after {timeout:g} s", self._failure(attempt, error))
        return None if next_deadline is None else max(0.0, next_deadline - now)

    def end_all(self, reason: str) -> None:
        """Mark every attempt ended without recording anything (the worker lost them)."""
        with self._lock:
            ids = list(self._attempts)
        for job_id in ids:
            self.end_attempt(job_id, reason, None)

    # -- shutdown ---------------------------------------------------------------------

    def wait_idle(self, timeout: float | None) -> bool:
        """Wait until no task runs; False when ``timeout`` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._busy_threads:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def shutdown(self) -> None:
        """End the idle job threads. Runaway threads cannot be joined; they end when their task returns."""
        for _ in self._threads:
            self._buffer.put(None)


def run_coroutine(loop: asyncio.AbstractEventLoop, context: JobContext, coroutine: Any) -> Any:
    """Run a task's coroutine to its end on ``loop``; ``context.cancel`` interrupts it at its next await.

    Tasks the coroutine started and left running are cancelled and awaited before
    this returns, as ``asyncio.run`` does: on a loop reused by the next job they
    would otherwise go on running inside it, as the ended job.
    """
    running = loop.create_task(coroutine)
    context.on_cancel(lambda: _cancel_soon(loop, running))
    try:
        return loop.run_until_complete(running)
    finally:
        left = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in left:
            task.cancel()
        if left:
            loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))


def _cancel_soon(loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
    try:
        loop.call_soon_threadsafe(task.cancel)
    except RuntimeError:
        pass  # the loop is closed: the coroutine ended long ago


def run_coroutine_once(context: JobContext, coroutine: Any) -> Any:
    """``run_coroutine`` on an event loop of its own, closed afterwards; in a thread of its own
    (with this thread's context variables) when this thread already runs an event loop."""
    if _loop_running_here():
        return _in_a_thread_of_its_own(lambda: run_coroutine_once(context, coroutine))
    loop = asyncio.new_event_loop()
    try:
        return run_coroutine(loop, context, coroutine)
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


def _loop_running_here() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _in_a_thread_of_its_own(fn: Callable[[], Any]) -> Any:
    done: dict[str, Any] = {}

    def main() -> None:
        try:
            done["result"] = fn()
        except BaseException as exc:
            done["error"] = exc

    thread = threading.Thread(target=contextvars.copy_context().run, args=(main,), name="queuer-async-task")
    thread.start()
    thread.join()
    if "error" in done:
        raise done["error"]
    return done["result"]
