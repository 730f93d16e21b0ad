"""A registered task: a plain function and the name jobs refer to it by."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Task:
    """A registered task: the function that jobs of task ``name`` run, and its flow controls.

    ``add_task`` and ``add_task_with_name`` return it; ``Queuer.tasks`` holds them by name.
    """

    name: str
    fn: Callable[..., Any] = field(compare=False)
    concurrency_limit: int | None = None
    """At most this many of its jobs run at once, all workers together (None: no limit)."""
    requests_per_second: float | None = None
    """At most this many of its jobs start per second, all workers together (None: no limit)."""
    serialized: bool = False
    """One of its jobs runs at a time, all workers together."""
    group_concurrency_limit: int | None = None
    """At most this many of its jobs of one ``group_key`` run at once, all workers together."""
    group_requests_per_second: float | None = None
    """At most this many of its jobs of one ``group_key`` start per second, all workers together."""

    @property
    def task(self) -> Callable[..., Any]:
        """queuerPy's name for the function."""
        return self.fn

    @property
    def limited(self) -> bool:
        """True when any flow control is set."""
        return self.concurrency_limit is not None or self.requests_per_second is not None or self.serialized

    @property
    def grouped(self) -> bool:
        """True when its jobs are claimed by group: round-robin between keys, with limits per key."""
        return self.group_concurrency_limit is not None or self.group_requests_per_second is not None

    @property
    def effective_concurrency_limit(self) -> int | None:
        """Serialized dispatch is a concurrency limit of one."""
        if self.serialized:
            return 1 if self.concurrency_limit is None else min(1, self.concurrency_limit)
        return self.concurrency_limit

    is_async: bool = field(default=False, compare=False)
    """True for an ``async def`` function, run on an event loop (set from ``fn``)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "is_async", inspect.iscoroutinefunction(self.fn))


def task_name_of(fn: Callable[..., Any]) -> str:
    """The name a function is registered under when none is given."""
    if inspect.ismethod(fn):
        # "Class.method": a bound method's __name__ alone would collide across classes.
        fn = fn.__func__
        name = getattr(fn, "__qualname__", None)
    else:
        name = getattr(fn, "__name__", None)
    if not name or name == "<lambda>":
        raise ValueError("cannot derive a task name from this callable: pass name=... explicitly")
    return str(name)
