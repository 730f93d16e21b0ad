"""Executor: runs one attempt's task and turns what happened into an Outcome.

It opens the arguments (decrypting them when sealed), refuses rows that cannot
be called, calls the task (an ``async def`` one on the thread's event loop),
checks and seals the result, and asks a recurring job's next-interval function
for its next run. An isolated attempt (a suspect) does all that in a child
process of its own. Threads, the buffer and accounting are the dispatcher's.
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from queuer.errors import EncryptionError
from queuer.model.context import Snooze, reset_current, set_current
from queuer.model.rows import RETRY, SNOOZE, SUCCEEDED, Outcome
from queuer.model.task import Task
from queuer.observability import tracing
from queuer.payload.encryption import Keyring
from queuer.payload.serialization import MAX_NESTING, Undecodable, storable_size, to_json
from queuer.runtime.async_runner import ThreadLoops
from queuer.runtime.attempt import Attempt
from queuer.runtime.isolation import ProcessIsolation
from queuer.runtime.next_run import NextIntervalFunc, with_next_run
from queuer.runtime.retries import failure

# The longest a job may snooze at once.
MAX_SNOOZE_SECONDS = 10 * 365 * 86400.0


class Executor:
    def __init__(
        self,
        tasks: Mapping[str, Task],
        keyring: Keyring | None = None,
        next_interval_funcs: Mapping[str, NextIntervalFunc] | None = None,
        max_result_bytes: int = 1024 * 1024,
        passthrough: tuple[type[BaseException], ...] = (),
        max_snoozes: int = 100,
    ) -> None:
        self.tasks = tasks
        self.keyring = keyring
        self.next_interval_funcs = next_interval_funcs if next_interval_funcs is not None else {}
        self.max_result_bytes = max_result_bytes
        self.max_snoozes = max_snoozes
        # Exceptions a task raises that end the caller's run instead of failing the job
        # (the test kit's drain: Ctrl-C, a pytest timeout).
        self._passthrough = passthrough
        self._tracing = tracing.Switch()
        self.loops = ThreadLoops()
        self.isolation = ProcessIsolation()

    def run(self, attempt: Attempt) -> Outcome | None:
        """Run the attempt from the calling thread, in a tracing span when tracing is on.

        None: an isolated attempt was cancelled or timed out, and its process killed for it.
        """
        if not self._tracing.on():
            return self._attempt(attempt)
        with tracing.processing(attempt.job, self._tracing.tracer) as span:
            outcome = self._attempt(attempt)
            tracing.set_outcome(span, outcome, attempt.context)
            return outcome

    def _attempt(self, attempt: Attempt) -> Outcome | None:
        if attempt.isolated and self.isolation.available:
            return self.isolation.run(attempt, self._outcome_of)
        return self._outcome_of(attempt)

    def _outcome_of(self, attempt: Attempt) -> Outcome:
        outcome = self._execute(attempt)
        if attempt.context.completed_in_tx:
            # Written already if the task's transaction committed; this one then finds the job gone.
            outcome = replace(outcome, completed_in_tx=True)
        if outcome.status is RETRY or outcome.status is SNOOZE:
            return outcome
        return with_next_run(attempt.job, outcome, self.next_interval_funcs)

    def _execute(self, attempt: Attempt) -> Outcome:
        job = attempt.job
        task = self.tasks.get(job.task_name)
        if task is None:  # claimed only for registered tasks, but a task can be removed
            error = f"TaskNotRegisteredError: task {job.task_name!r} is not registered on this worker"
            return failure(job, attempt.on_error, error, retry=False)
        if job.arguments_enc is not None:
            if self.keyring is None:
                error = ("EncryptionError: the job's arguments are encrypted and this worker has no key: "
                         "set QUEUER_ENCRYPTION_KEY")
                return failure(job, attempt.on_error, error, retry=False)
            try:
                job.parameters, job.parameters_keyed = self.keyring.open_arguments(job.arguments_enc, job.binding)
            except EncryptionError as exc:
                return failure(job, attempt.on_error, f"EncryptionError: {exc}", retry=False)
        for arguments in (job.parameters, job.parameters_keyed):
            if isinstance(arguments, Undecodable):
                error = (f"InvalidJobError: the job's stored arguments cannot be decoded ({arguments.reason}); "
                         f"arguments may nest at most {MAX_NESTING} levels")
                return failure(job, attempt.on_error, error, retry=False)
        if not isinstance(job.parameters, list) or not isinstance(job.parameters_keyed, dict):
            error = ("InvalidJobError: parameters must be a JSON array and parameters_keyed a JSON object; "
                     f"got {type(job.parameters).__name__} and {type(job.parameters_keyed).__name__}")
            return failure(job, attempt.on_error, error, retry=False)
        token = set_current(attempt.context)
        try:
            result = task.fn(*job.parameters, **job.parameters_keyed)
            # Not only ``async def``: a decorated coroutine function returns a coroutine too.
            if asyncio.iscoroutine(result):
                result = self.loops.run(attempt.context, result)
        except Snooze as snooze:
            return self._snoozed(attempt, snooze)
        except BaseException as exc:
            if isinstance(exc, self._passthrough):
                raise
            tracing.record_exception(exc)
            error = f"{type(exc).__name__}: {exc}\n" + "".join(traceback.format_exception(exc))
            # Arguments that do not fit the task's signature fail the call itself (no frame of
            # the task in the traceback): that fails the same way every time, so no retry.
            mismatch = isinstance(exc, TypeError) and exc.__traceback__ is not None and exc.__traceback__.tb_next is None
            return failure(job, attempt.on_error, error, retry=not mismatch)
        finally:
            reset_current(token)
        return self._success(attempt, result)

    def _snoozed(self, attempt: Attempt, snooze: Snooze) -> Outcome:
        job = attempt.job
        seconds = snooze.seconds
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds <= MAX_SNOOZE_SECONDS:
            error = (f"ValueError: Snooze takes a number of seconds from 0 to {MAX_SNOOZE_SECONDS:.0f} (10 years), "
                     f"not {seconds!r}")
            return failure(job, attempt.on_error, error, retry=False)
        if job.snoozes >= self.max_snoozes:
            error = (f"SnoozeLimitError: the job snoozed {job.snoozes} times, the most a job may "
                     f"(WorkerSettings.max_snoozes)")
            return failure(job, attempt.on_error, error, retry=False)
        return Outcome(job.id, job.attempt, SNOOZE, retry_delay=float(seconds))

    def _success(self, attempt: Attempt, result: Any) -> Outcome:
        job = attempt.job
        try:
            results = to_json(result, f"the result of task {job.task_name!r}")
            size = storable_size(results, f"the result of task {job.task_name!r}")
            if size > self.max_result_bytes:
                raise ValueError(
                    f"the result of task {job.task_name!r} is {size:,} bytes of JSON, over the limit of "
                    f"{self.max_result_bytes:,} (WorkerSettings.max_payload_bytes); store large data "
                    "elsewhere and return a reference")
        except (TypeError, ValueError) as exc:
            return failure(job, attempt.on_error, f"{type(exc).__name__}: {exc}", retry=False)
        if self.keyring is not None:
            sealed = self.keyring.seal_results(results, job.rid)
            return Outcome(job.id, job.attempt, SUCCEEDED, results=None, results_enc=sealed)
        return Outcome(job.id, job.attempt, SUCCEEDED, results=results)
