"""TaskSet: the tasks and next-interval functions one Queuer can run.

A function registered twice under one name is harmless; another function under
a taken name is a DuplicateTaskError. Functions are compared with ``==``, so a
bound method (a new object at every attribute access) finds its task again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from queuer.client import registry
from queuer.errors import DuplicateTaskError, TaskNotRegisteredError
from queuer.model.task import Task, task_name_of

NextIntervalFunc = Callable[..., datetime]


class TaskSet:
    def __init__(self, tasks: dict[str, Task]) -> None:
        self._lock = threading.Lock()
        # Shared with the worker's loops, which see tasks added after start().
        self.tasks: dict[str, Task] = dict(tasks)
        self.next_interval_funcs: dict[str, NextIntervalFunc] = {}

    def __iter__(self) -> Iterator[str]:
        return iter(self.tasks)

    def __len__(self) -> int:
        return len(self.tasks)

    def add(
        self,
        fn: Callable[..., Any],
        name: str | None = None,
        *,
        concurrency_limit: int | None = None,
        requests_per_second: float | None = None,
        serialized: bool = False,
        group_concurrency_limit: int | None = None,
        group_requests_per_second: float | None = None,
    ) -> Task:
        new = registry.make_task(
            fn, name,
            concurrency_limit=concurrency_limit, requests_per_second=requests_per_second, serialized=serialized,
            group_concurrency_limit=group_concurrency_limit,
            group_requests_per_second=group_requests_per_second,
        )
        with self._lock:
            existing = self.tasks.get(new.name)
            if existing is not None and existing.fn != fn:
                raise DuplicateTaskError(
                    f"Task already exists: {new.name} (another function is registered under this name); "
                    "register this one with add_task_with_name(fn, 'other-name')"
                )
            self.tasks[new.name] = new
        return new

    def add_next_interval_func(self, nif: NextIntervalFunc, name: str | None = None) -> str:
        if nif is None:
            raise TypeError("NextIntervalFunc cannot be None")
        if not callable(nif):
            raise TypeError(f"a next-interval function must be callable, not {type(nif).__name__}")
        name = registry.validate_task_name(name if name is not None else task_name_of(nif))
        with self._lock:
            existing = self.next_interval_funcs.get(name)
            if existing is not None and existing != nif:
                raise DuplicateTaskError(
                    f"NextIntervalFunc already exists: {name} (another function is registered under this name)"
                )
            self.next_interval_funcs[name] = nif
        return name

    def name_of(self, task: Callable[..., Any] | str) -> str:
        """The task name a job of ``task`` (a registered function or a name) is stored under."""
        if isinstance(task, str):
            return registry.validate_task_name(task)
        if not callable(task):
            raise TypeError(f"task must be a registered function or a task name, not {type(task).__name__}")
        for registered in self.tasks.values():
            if registered.fn == task:
                return registered.name
        raise TaskNotRegisteredError(getattr(task, "__qualname__", None) or repr(task))
