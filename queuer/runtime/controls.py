"""TaskControls: the pauses and limits operators set at runtime, as this worker applies them.

Read before the first claim, again as soon as a "control" notification comes,
and at least once a second (should a notification be missed).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import replace

from queuer.database.control_db import ControlDB
from queuer.model.control import TaskControl
from queuer.model.task import Task

log = logging.getLogger("queuer.worker")

REFRESH_EVERY_SECONDS = 1.0


class TaskControls:
    def __init__(self, control_db: ControlDB, on_paused: Callable[[Collection[str]], None]) -> None:
        self.control_db = control_db
        self._on_paused = on_paused
        self._lock = threading.Lock()
        self._controls: dict[str, TaskControl] = {}
        self._stale = True
        self._next_refresh = 0.0
        self._marked_grouped: set[str] = set()  # tasks this worker told the database it claims by group

    def mark_stale(self) -> None:
        """A control changed somewhere: read them again before the next claim."""
        self._stale = True

    def effective(self, tasks: Mapping[str, Task]) -> dict[str, Task]:
        """The tasks this worker may claim now: none that is paused, each with the limits in force."""
        self._mark_grouped(tasks)
        controls = self._current()
        if not controls:
            return dict(tasks)
        effective = {}
        for name, task in tasks.items():
            control = controls.get(name)
            if control is None:
                effective[name] = task
            elif not control.paused:
                effective[name] = task if not control.limits_set else replace(
                    task, concurrency_limit=control.concurrency_limit,
                    requests_per_second=control.requests_per_second)
        return effective

    def _mark_grouped(self, tasks: Mapping[str, Task]) -> None:
        # Before the first claim of a task claimed by group: its jobs without a key get the key ''.
        new = [name for name, task in tasks.items() if task.grouped and name not in self._marked_grouped]
        if new:
            try:
                self.control_db.mark_grouped(new)
            except Exception as exc:  # tried again before the next claim
                log.warning("could not mark the tasks claimed by group (%s)", exc)
                return
            self._marked_grouped.update(new)

    def _current(self) -> dict[str, TaskControl]:
        now = time.monotonic()
        if not self._stale and now < self._next_refresh:
            return self._controls
        with self._lock:
            self._stale = False
            self._next_refresh = now + REFRESH_EVERY_SECONDS
            try:
                fresh = {control.task_name: control for control in self.control_db.all()}
            except Exception as exc:  # the database is away: keep what we knew; the claim will fail too
                log.warning("could not read the task controls (%s); keeping the last ones", exc)
                return self._controls
            newly_paused = [name for name, control in fresh.items()
                            if control.paused and not (name in self._controls and self._controls[name].paused)]
            self._controls = fresh
        if newly_paused:
            self._on_paused(newly_paused)
        return fresh
