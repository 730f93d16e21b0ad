"""``assert_enqueued`` / ``refute_enqueued``: what a test expects to be waiting in the queue."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from queuer.client.queuer import Queuer
from queuer.model.job import Job

ANY = object()  # the default: any arguments match

MAX_LISTED = 20  # jobs shown in a failure message


def enqueued_jobs(q: Queuer, task: Callable[..., Any] | str | None = None) -> list[Job]:
    """The jobs of ``q``'s schema not yet ended (queued, scheduled or running), oldest first."""
    name = None if task is None else q._tasks.name_of(task)
    jobs: list[Job] = []
    after_id = None
    while True:  # keyset pages: a test's queue is small, but never cut it short
        page = q.job_db.get_jobs(task_name=name, limit=500, after_id=after_id)
        jobs += page
        if len(page) < 500:
            return jobs
        after_id = page[-1].id


def assert_enqueued(
    q: Queuer,
    task: Callable[..., Any] | str,
    args: Sequence[Any] | object = ANY,
    kwargs: Mapping[str, Any] | object = ANY,
    *,
    count: int | None = None,
) -> list[Job]:
    """Fail unless a job of ``task`` with these arguments waits in the queue; return the matches.

    ``args`` and ``kwargs`` are compared as the task will receive them (through
    JSON); leave either out to accept any. ``count`` asks for exactly that many.
    """
    name = q._tasks.name_of(task)
    waiting = enqueued_jobs(q)
    found = _matching(waiting, name, args, kwargs)
    if found and (count is None or len(found) == count):
        return found
    wanted = _describe(name, args, kwargs)
    if count is not None and found:
        raise AssertionError(f"expected {count} enqueued job(s) {wanted}, found {len(found)}:\n"
                             + _listing(found))
    raise AssertionError(f"expected an enqueued job {wanted}, found none.\n" + _near_misses(waiting, name))


def refute_enqueued(
    q: Queuer,
    task: Callable[..., Any] | str,
    args: Sequence[Any] | object = ANY,
    kwargs: Mapping[str, Any] | object = ANY,
) -> None:
    """Fail if a job of ``task`` with these arguments (any, when left out) waits in the queue."""
    name = q._tasks.name_of(task)
    found = _matching(enqueued_jobs(q, name), name, args, kwargs)
    if found:
        raise AssertionError(f"expected no enqueued job {_describe(name, args, kwargs)}, found {len(found)}:\n"
                             + _listing(found))


def _matching(jobs: list[Job], name: str, args: Any, kwargs: Any) -> list[Job]:
    want_args = ANY if args is ANY else _as_json(list(args))
    want_kwargs = ANY if kwargs is ANY else _as_json(dict(kwargs))
    return [
        job for job in jobs
        if job.task_name == name
        and (want_args is ANY or job.parameters == want_args)
        and (want_kwargs is ANY or job.parameters_keyed == want_kwargs)
    ]


def _as_json(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _describe(name: str, args: Any, kwargs: Any) -> str:
    parts = [] if args is ANY else [f"args={_as_json(list(args))!r}"]
    parts += [] if kwargs is ANY else [f"kwargs={_as_json(dict(kwargs))!r}"]
    return f"of {name!r}" + (f" with {', '.join(parts)}" if parts else "")


def _listing(jobs: list[Job]) -> str:
    lines = [f"  - {job.task_name} {job.status.value} args={job.parameters!r} kwargs={job.parameters_keyed!r}"
             + (" (encrypted)" if job.encrypted else "") for job in jobs[:MAX_LISTED]]
    if len(jobs) > MAX_LISTED:
        lines.append(f"  ... and {len(jobs) - MAX_LISTED} more")
    return "\n".join(lines)


def _near_misses(waiting: list[Job], name: str) -> str:
    same_task = [job for job in waiting if job.task_name == name]
    if same_task:
        return f"Enqueued jobs of {name!r}:\n" + _listing(same_task)
    if waiting:
        return f"No job of {name!r} is enqueued; the queue holds:\n" + _listing(waiting)
    return "The queue is empty."
