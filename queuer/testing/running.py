"""Run jobs and tasks inside a test: ``drain`` a queuer, ``run_task`` one function."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from queuer.client.queuer import Queuer
from queuer.model.context import JobContext, reset_current, set_current
from queuer.model.job import Job
from queuer.model.rows import ClaimedJob, Outcome, OutcomeStatus
from queuer.model.worker import WorkerStatus
from queuer.payload.serialization import storable_size, to_json
from queuer.runtime.async_runner import run_coroutine_once
from queuer.runtime.dispatcher import Dispatcher
from queuer.runtime.executor import Executor

CLAIM_BATCH = 100


def drain(q: Queuer, timeout: float = 10.0, *, with_scheduled: bool = False, in_thread: bool = True) -> list[Job]:
    """Run every due job of ``q``'s tasks to its end; return the jobs that ended, in order.

    By default the jobs run one at a time in the calling thread, through the
    worker's own code (a task's exception fails its job, with the traceback in
    ``job.error``), and there is nothing to wait for; timeouts and rate limits
    are not applied. A job that fails with retries left is retried as soon
    as it is due again. ``with_scheduled=True`` also runs jobs scheduled for
    later (delayed jobs, retries after a delay, the next run of a schedule)
    right away. ``in_thread=False`` starts ``q``'s worker instead (its threads,
    limits and timeouts) and waits until nothing is due or running.

    Raises ``TimeoutError`` when jobs are still due after ``timeout`` seconds
    (a schedule without end, with ``with_scheduled=True``, never drains).
    A ``KeyboardInterrupt`` or a pytest outcome (``pytest.fail``, a
    pytest-timeout) raised while a task runs is not the task's failure: it ends
    the drain. Whatever ends a drain early puts the jobs it held back in the queue.
    """
    if not in_thread:
        return _drain_with_worker(q, timeout, with_scheduled)
    if q.running:
        raise RuntimeError("drain(q) runs jobs in the calling thread: call it on a queuer that is not started, "
                           "or pass in_thread=False to let its worker run them")
    tasks = q._tasks.tasks
    ended: list[Outcome] = []
    executor = Executor(tasks, q.keyring, q._tasks.next_interval_funcs, max_result_bytes=q.settings.max_payload_bytes,
                        passthrough=_interruptions(), max_snoozes=q.settings.max_snoozes)
    dispatcher = Dispatcher(executor, 1, 1, ended.append, lambda: None, q.default_on_error, q.resources, threads=False,
                            services=q._job_services)
    worker_rid = q.worker.rid
    q.worker_db.set_status(worker_rid, WorkerStatus.RUNNING)  # claims are for running workers only
    finished: list[Job] = []
    claimed: list[ClaimedJob] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            if with_scheduled:
                q.db.execute(q.db.queries.testing_schedule_now, {"tasks": list(tasks)})
            claimed = q.attempt_db.claim(worker_rid, list(tasks), CLAIM_BATCH, *_claim_defaults(q))
            if not claimed:
                return finished
            if time.monotonic() > deadline:
                raise TimeoutError(f"drain: jobs were still due after {timeout:g} s "
                                   f"({len(finished)} ended); a schedule without end never drains")
            dispatcher.submit(claimed)
            dispatcher.run_here()
            rids = {job.id: job.rid for job in claimed}
            applied = q.attempt_db.record_outcomes(worker_rid, ended)
            claimed = []
            finished += [q.get_job_ended(rids[o.id]) for o in ended
                         if o.status is not OutcomeStatus.RETRY and o.status is not OutcomeStatus.SNOOZE
                         and o.id in applied]
            ended.clear()
    except BaseException:
        _put_back(q, worker_rid, claimed)
        raise
    finally:
        try:
            executor.loops.close()
        finally:
            q.worker_db.set_status(worker_rid, WorkerStatus.READY)


def _interruptions() -> tuple[type[BaseException], ...]:
    """What stops a test run rather than fails a job: Ctrl-C, and pytest's outcomes when pytest runs."""
    outcomes = sys.modules.get("_pytest.outcomes")
    exception = getattr(outcomes, "OutcomeException", None)
    return (KeyboardInterrupt,) + ((exception,) if isinstance(exception, type) else ())


def _put_back(q: Queuer, worker_rid: uuid.UUID, claimed: list[ClaimedJob]) -> None:
    """Give back the jobs of a batch whose outcomes were not recorded, so they are not left
    RUNNING under a worker that never runs them (the release is fenced: ended jobs stay ended)."""
    if not claimed:
        return
    try:
        q.attempt_db.release(worker_rid, [(job.id, job.attempt) for job in claimed])
    except Exception as exc:  # the database may be what failed: the first error matters more
        warnings.warn(f"drain could not put {len(claimed)} job(s) back in the queue: {exc}", stacklevel=3)


def _claim_defaults(q: Queuer) -> tuple[int, float | None, int]:
    on_error = q.default_on_error
    return (on_error.max_attempts if on_error else 1, on_error.timeout_seconds if on_error else None,
            q.settings.crash_budget)


def _drain_with_worker(q: Queuer, timeout: float, with_scheduled: bool) -> list[Job]:
    statements = q.db.queries
    tasks = list(q._tasks.tasks)
    since = q.worker_db.now()
    started_here = not q.running
    if started_here:
        q.start()
    deadline = time.monotonic() + timeout
    try:
        while True:
            if with_scheduled:
                q.db.execute(statements.testing_schedule_now, {"tasks": tasks})
            row = q.db.execute_one(statements.testing_due_or_running, {"tasks": tasks})
            if not row or not row["n"]:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"drain: {row['n']} jobs were still due or running after {timeout:g} s")
            time.sleep(0.01)
    finally:
        if started_here:
            q.stop()
    rows = q.db.execute(statements.testing_ended_since, {"since": since})
    return [q.get_job_ended(row["rid"]) for row in rows]


def job_context(
    *,
    rid: uuid.UUID | None = None,
    task_name: str = "",
    attempt: int = 1,
    max_attempts: int = 1,
    resources: Mapping[str, Any] | None = None,
) -> JobContext:
    """A job context for ``run_task_in``: cancel it (``ctx.cancel("why")``) to test cancellation."""
    return JobContext(
        id=0, rid=rid or uuid.uuid4(), task_name=task_name, attempt=attempt, max_attempts=max_attempts,
        parameters=[], parameters_keyed={}, resources=resources or {},
    )


def run_task(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``fn`` as a worker would and return its result (or raise what it raised).

    The arguments travel through JSON first, as they would through the queue
    (a tuple arrives as a list), ``queuer.current_job()`` works inside, an
    ``async def`` task runs on an event loop, and the result must be JSON.
    """
    return run_task_in(job_context(task_name=getattr(fn, "__name__", "")), fn, *args, **kwargs)


def run_task_in(context: JobContext, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``run_task`` with a context of the test's own (see ``job_context``)."""
    parameters = _through_json(list(args), "the positional arguments")
    parameters_keyed = _through_json(dict(kwargs), "the keyword arguments")
    context.parameters, context.parameters_keyed = parameters, parameters_keyed
    token = set_current(context)
    try:
        result = fn(*parameters, **parameters_keyed)
        if asyncio.iscoroutine(result):
            result = run_coroutine_once(context, result)
    finally:
        reset_current(token)
    _through_json(result, f"the result of {getattr(fn, '__name__', fn)!r}")
    return result


def _through_json(value: Any, what: str) -> Any:
    """``value`` as the task (or the job's reader) would get it back: through the queue's own JSON."""
    text = to_json(value, f"{what} (which would not survive the queue)")
    storable_size(text, what)
    return json.loads(text)

