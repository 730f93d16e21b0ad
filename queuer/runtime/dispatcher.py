"""Dispatcher: the local job buffer and the job threads that run attempts.

Claimed attempts wait in a FIFO buffer (claim order = priority order);
``max_concurrency`` job threads pop the next one whenever they are free. An
attempt that has not started can therefore be taken back (released) at
shutdown or on cancel. What one attempt does is the executor's.

The first outcome of an attempt wins locally: a timeout or cancellation ends
the attempt at once, and whatever the task returns later is discarded.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any
from uuid import UUID

from queuer.model.context import JobContext, JobServices
from queuer.model.options import OnError
from queuer.model.rows import CRASHED, ClaimedJob, Outcome, OutcomeStatus
from queuer.observability.metrics import RunTimes
from queuer.runtime.attempt import BUFFERED, ENDED, RUNNING, Attempt
from queuer.runtime.executor import Executor
from queuer.runtime.prefetch import PrefetchSizer
from queuer.runtime.retries import failure, policy_of

log = logging.getLogger("queuer.worker")

# A cancel naming this worker for a job not held here: its claim may still be on its way from the
# database to the buffer. Remembered this long, so that the claim is dropped when it arrives.
EARLY_CANCEL_SECONDS = 60.0


class Dispatcher:
    def __init__(
        self,
        executor: Executor,
        max_concurrency: int,
        prefetch: int | None,
        on_outcome: Callable[[Outcome], None],
        on_capacity: Callable[[], None],
        default_on_error: OnError | None,
        resources: Mapping[str, Any],
        confirm_start: Callable[[int, int], bool] | None = None,
        threads: bool = True,
        services: JobServices | None = None,
        on_crash: Callable[[Outcome], None] | None = None,
    ) -> None:
        self.executor = executor
        self.max_concurrency = max_concurrency
        self.sizer = PrefetchSizer(max_concurrency, prefetch)
        self._on_outcome = on_outcome
        self._on_capacity = on_capacity
        # An isolated attempt's process died: the crash is charged at once (isolated
        # attempts are submitted only where this is given).
        self._on_crash = on_crash
        self.default_on_error = default_on_error
        self.resources = resources
        self._confirm_start = confirm_start
        self.services = services
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        # The buffer is a SimpleQueue: a job thread waits on it in C, holding no
        # Python lock, so a busy worker's many threads do not queue on one lock.
        # An attempt ended while buffered stays in it, marked, and is skipped.
        self._buffer: queue.SimpleQueue[Attempt | None] = queue.SimpleQueue()
        self._attempts: dict[int, Attempt] = {}  # job id -> attempt, buffered or running
        self._cancelled_early: dict[UUID, float] = {}  # rid -> until when (see EARLY_CANCEL_SECONDS)
        self._busy_threads = 0
        self.run_times = RunTimes()
        self.started_total = 0  # attempts begun on a job thread (claims that were released are not)
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
            return self.max_concurrency + self.sizer.target - self._buffer.qsize() - self._busy_threads

    def worth_claiming(self) -> int:
        """The smallest claim worth a round trip: half the buffer, so claims come in batches."""
        return max(1, self.sizer.target // 2)

    def busy(self) -> int:
        with self._lock:
            return self._busy_threads

    def running(self) -> list[tuple[int, int]]:
        """(job id, attempt) of every attempt running on a thread."""
        with self._lock:
            return [(a.job.id, a.job.attempt) for a in self._attempts.values() if a.state is RUNNING]

    def held(self) -> list[tuple[int, int]]:
        """(job id, attempt) of every attempt buffered or running here."""
        with self._lock:
            return [(a.job.id, a.job.attempt) for a in self._attempts.values() if a.state is not ENDED]

    # -- intake -----------------------------------------------------------------

    def submit(self, jobs: list[ClaimedJob], isolated: bool = False) -> None:
        """Buffer claimed jobs for the job threads; ``isolated``: each runs in a process of its own."""
        if isolated and self._on_crash is None:
            raise ValueError("isolated attempts need on_crash: their crashes are charged by it")
        attempts = []
        for job in jobs:
            try:
                on_error = policy_of(job, self.default_on_error)
            except (TypeError, ValueError, AttributeError) as exc:
                # A row edited into an invalid state fails alone; the worker goes on.
                self._on_outcome(Outcome(job.id, job.attempt, OutcomeStatus.FAILED,
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
                workflow_id=job.workflow_id,
                depends_on=job.depends_on or (),
                steps=job.steps,
                services=self.services,
            )
            attempts.append(Attempt(job, ctx, on_error, isolated=isolated))
        with self._lock:
            for attempt in attempts:
                if self._cancelled_early and self._cancelled_early.pop(attempt.job.rid, None) is not None:
                    attempt.state = ENDED  # cancelled while its claim was on its way here
                    log.info("job %s was cancelled before its claim reached this worker; not run", attempt.job.rid)
                    continue
                self._attempts[attempt.job.id] = attempt
        for attempt in attempts:
            if attempt.state is BUFFERED:
                self._buffer.put(attempt)

    def take_back_unstarted(self, task_names: Collection[str] | None = None) -> list[tuple[int, int]]:
        """Remove every attempt that has not started (of these tasks only, when given); return their fencing
        identities."""
        taken: list[Attempt] = []
        if task_names is not None:
            with self._lock:
                for held in list(self._attempts.values()):
                    if held.state is BUFFERED and held.job.task_name in task_names:
                        held.state = ENDED  # it stays in the buffer, marked: a thread skips it
                        self._forget(held)
                        taken.append(held)
            return [(a.job.id, a.job.attempt) for a in taken]
        with self._lock:
            while True:
                try:
                    attempt = self._buffer.get_nowait()
                except queue.Empty:
                    break
                if attempt is None or attempt.state is not BUFFERED:
                    continue
                attempt.state = ENDED
                self._forget(attempt)
                taken.append(attempt)
        return [(a.job.id, a.job.attempt) for a in taken]

    # -- running ----------------------------------------------------------------

    def _work_loop(self) -> None:
        """One of ``max_concurrency`` job threads: run buffered attempts in claim order."""
        while True:
            attempt = self._buffer.get()
            if attempt is None:  # shutdown
                self.executor.loops.close()
                return
            if self._begin(attempt):
                try:
                    self._run(attempt)
                except Exception:  # the thread must live on: the reconcile puts the job back
                    log.exception("job %s attempt %d: the worker failed around it", attempt.job.rid,
                                  attempt.job.attempt)

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
            if attempt.state is not BUFFERED:
                return False  # cancelled or taken back while it waited
            attempt.state = RUNNING
            attempt.thread_busy = True
            self._busy_threads += 1
            self.started_total += 1
            timeout = attempt.job.timeout_seconds
            attempt.deadline = time.monotonic() + timeout if timeout else None
        return True

    def _forget(self, attempt: Attempt) -> None:
        """Drop an attempt from the ones held here (under the lock)."""
        if self._attempts.get(attempt.job.id) is attempt:
            del self._attempts[attempt.job.id]

    def _may_start(self, attempt: Attempt) -> bool:
        """A job that has been through a crash records its start first (see the README's "Guarantees")."""
        if attempt.job.rescues == 0 or self._confirm_start is None:
            return True
        try:
            return self._confirm_start(attempt.job.id, attempt.job.attempt)
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
            outcome = self.executor.run(attempt)
            if outcome is not None and outcome.status is CRASHED and self._on_crash is not None:
                # Charged before the thread counts as free (a drain or a stop waits for the charge), and only
                # while the attempt counts: a timeout or cancel that ended it first has the last word.
                with self._lock:
                    counts = attempt.state is RUNNING
                if counts:
                    self._on_crash(outcome)
                outcome = None
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
            first = attempt.state is RUNNING
            attempt.state = ENDED
            self._forget(attempt)
            # Claim ahead: ask for more while half the buffer is still there to run.
            refill = self._buffer.qsize() <= self.sizer.target // 2
            if self._busy_threads == 0:
                self._idle.notify_all()
        if outcome is not None and first:
            self._on_outcome(outcome)
        elif outcome is not None:
            log.info(
                "job %s attempt %d returned after it had already ended (%s); its result is discarded",
                attempt.job.rid, attempt.job.attempt, attempt.context.cancel_reason or "ended",
            )
        if refill:
            self._on_capacity()

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
            if attempt.state is ENDED:
                return False
            still_running = attempt.thread_busy
            attempt.state = ENDED
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

    def cancel(self, rid: UUID, reason: str) -> None:
        """The job ``rid`` was cancelled in the database: end its attempt here, or, if none is held, drop its
        claim when it arrives."""
        with self._lock:
            attempt = next((a for a in self._attempts.values() if a.job.rid == rid), None)
            if attempt is None:
                now = time.monotonic()
                for stale in [r for r, until in self._cancelled_early.items() if until < now]:
                    del self._cancelled_early[stale]
                self._cancelled_early[rid] = now + EARLY_CANCEL_SECONDS
                return
        self.end_attempt(attempt.job.id, reason, None)

    def expire_timeouts(self) -> float | None:
        """End attempts past their deadline; return seconds until the next deadline."""
        now = time.monotonic()
        expired: list[Attempt] = []
        next_deadline: float | None = None
        with self._lock:
            for attempt in self._attempts.values():
                if attempt.state is not RUNNING or attempt.deadline is None:
                    continue
                if attempt.deadline <= now:
                    expired.append(attempt)
                elif next_deadline is None or attempt.deadline < next_deadline:
                    next_deadline = attempt.deadline
        for attempt in expired:
            timeout = attempt.job.timeout_seconds
            error = f"TimeoutError: attempt {attempt.job.attempt} ran longer than its timeout of {timeout:g} s"
            self.end_attempt(attempt.job.id, f"timed out after {timeout:g} s", failure(attempt.job, attempt.on_error, error))
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


