"""The next run of a recurring job whose schedule names a next-interval function."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime

from queuer.model.rows import ClaimedJob, Outcome

log = logging.getLogger("queuer.worker")

NextIntervalFunc = Callable[[datetime, int], datetime]


def with_next_run(job: ClaimedJob, outcome: Outcome, funcs: Mapping[str, NextIntervalFunc]) -> Outcome:
    """``outcome`` with the time the job's next-interval function gives (unchanged for other jobs)."""
    schedule = job.options.get("schedule") if job.options else None
    name = schedule.get("next_interval") if schedule else None
    if not name:
        return outcome  # none, or a fixed interval: the database computes the next run
    fn = funcs.get(name)
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
