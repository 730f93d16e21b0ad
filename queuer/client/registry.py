"""The module-level task registry behind ``@queuer.task``.

This is the one piece of module-level mutable state: every Queuer created
after a decorated function was imported picks its tasks up from here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from queuer.errors import DuplicateTaskError
from queuer.model.task import Task, task_name_of

F = TypeVar("F", bound=Callable[..., Any])

_lock = threading.Lock()
_tasks: dict[str, Task] = {}


def validate_task_name(name: str, what: str = "a task name") -> str:
    """A task or schedule name: 1 to 200 printable characters, no space at either end.

    Names are shown to operators (terminal, web UI) and typed back by them: a
    control or bidi character could rewrite a terminal, and a leading space
    would make a name nobody can find again.
    """
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"{what} must be a non-empty string of at most {MAX_NAME_LENGTH} characters")
    if not name.isprintable():
        raise ValueError(f"{what} {name!r} contains control characters (or other unprintable ones): use printable ones only")
    if name != name.strip():
        raise ValueError(f"{what} {name!r} starts or ends with a space: remove it")
    return name


MAX_NAME_LENGTH = 200


def make_task(
    fn: Callable[..., Any],
    name: str | None = None,
    *,
    concurrency_limit: int | None = None,
    requests_per_second: float | None = None,
    serialized: bool = False,
    group_concurrency_limit: int | None = None,
    group_requests_per_second: float | None = None,
) -> Task:
    if not callable(fn):
        raise TypeError(f"a task must be callable, not {type(fn).__name__}")
    if concurrency_limit is not None and (not isinstance(concurrency_limit, int) or concurrency_limit < 1):
        raise ValueError("concurrency_limit must be a positive integer or None")
    if requests_per_second is not None and (
        not isinstance(requests_per_second, (int, float)) or requests_per_second <= 0
    ):
        raise ValueError("requests_per_second must be a positive number or None")
    if group_concurrency_limit is not None and (isinstance(group_concurrency_limit, bool)
                                                or not isinstance(group_concurrency_limit, int)
                                                or group_concurrency_limit < 1):
        raise ValueError("group_concurrency_limit must be a positive integer or None")
    if group_requests_per_second is not None and (
        not isinstance(group_requests_per_second, (int, float)) or group_requests_per_second <= 0
    ):
        raise ValueError("group_requests_per_second must be a positive number or None")
    if (group_concurrency_limit or group_requests_per_second) and (concurrency_limit or requests_per_second
                                                                   or serialized):
        raise ValueError("a task is limited per group or as a whole, not both: give it either group_* limits or "
                         "concurrency_limit / requests_per_second / serialized")
    return Task(
        name=validate_task_name(name if name is not None else task_name_of(fn)),
        fn=fn,
        concurrency_limit=concurrency_limit,
        requests_per_second=requests_per_second,
        serialized=serialized,
        group_concurrency_limit=group_concurrency_limit,
        group_requests_per_second=group_requests_per_second,
    )


def task(
    name: str | None = None,
    *,
    concurrency_limit: int | None = None,
    requests_per_second: float | None = None,
    serialized: bool = False,
    group_concurrency_limit: int | None = None,
    group_requests_per_second: float | None = None,
) -> Callable[[F], F]:
    """Register a function as a task for every Queuer created afterwards."""

    def decorate(fn: F) -> F:
        registered = make_task(
            fn,
            name,
            concurrency_limit=concurrency_limit,
            requests_per_second=requests_per_second,
            serialized=serialized,
            group_concurrency_limit=group_concurrency_limit,
            group_requests_per_second=group_requests_per_second,
        )
        with _lock:
            existing = _tasks.get(registered.name)
            if existing is not None and existing.fn != fn and _qualname(existing.fn) != _qualname(fn):
                raise DuplicateTaskError(
                    f"Task already exists: {registered.name} (another function is registered under this name)"
                )
            _tasks[registered.name] = registered
        return fn

    if callable(name):  # used bare: @queuer.task
        fn, name = name, None
        return decorate(fn)
    return decorate


def task_with_name(name: str) -> Callable[[F], F]:
    """Register a function as task ``name`` for every Queuer created afterwards."""
    if not isinstance(name, str):
        raise TypeError("task_with_name takes the task's name, e.g. @queuer.task_with_name('resize')")
    return task(name)


def registered_tasks() -> dict[str, Task]:
    with _lock:
        return dict(_tasks)


def _qualname(fn: Callable[..., Any]) -> str:
    # A module imported twice (as __main__ and by name) defines "the same" function twice.
    return f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', '')}".replace("__main__.", "")
