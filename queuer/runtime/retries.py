"""The retry policy: which ``OnError`` governs a job, and what one of its failures becomes."""

from __future__ import annotations

from queuer.model.options import OnError
from queuer.model.rows import FAILED, RETRY, ClaimedJob, Outcome


def policy_of(job: ClaimedJob, default: OnError | None) -> OnError | None:
    """The job's own ``on_error``, else the worker's; TypeError/ValueError for a row edited into nonsense."""
    if job.options is not None and not isinstance(job.options, dict):
        raise TypeError("options must be a JSON object")
    stored = job.options.get("on_error") if job.options else None
    return OnError.from_dict(stored) if stored else default


def failure(job: ClaimedJob, on_error: OnError | None, error: str, retry: bool = True) -> Outcome:
    """A failed attempt: RETRY (after the policy's delay) while attempts are left and ``retry``, else FAILED."""
    # Only failures spend retries: attempts cut short by crashes are not counted here.
    failures = job.failures + 1
    if retry and failures < job.max_attempts:
        delay = on_error.retry_delay_after(failures) if on_error else 0.0
        return Outcome(job.id, job.attempt, RETRY, error=error, retry_delay=delay)
    return Outcome(job.id, job.attempt, FAILED, error=error)
