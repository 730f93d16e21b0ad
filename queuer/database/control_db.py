"""ControlDB: tasks paused and limits changed at runtime (``task_control``)."""

from __future__ import annotations

from queuer.database.connection import Database
from queuer.model.control import TaskControl


class ControlDB:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.q = db.queries

    def all(self) -> list[TaskControl]:
        return [TaskControl.from_row(row) for row in self.db.execute(self.q.task_controls)]

    def set_paused(self, task_name: str, paused: bool) -> TaskControl:
        row = self.db.execute_one(self.q.set_task_paused,
                                  {"task_name": task_name, "paused": paused, "channel": self.db.channel})
        assert row is not None  # the upsert returns its row
        return TaskControl.from_row(row)

    def mark_grouped(self, task_names: list[str]) -> None:
        """These tasks are claimed by group: their jobs without a key, now and later, get the key ''."""
        self.db.execute(self.q.mark_grouped_tasks, {"task_names": task_names})

    def set_limits(self, task_name: str, limits_set: bool, concurrency_limit: int | None,
                   requests_per_second: float | None) -> TaskControl:
        row = self.db.execute_one(self.q.set_task_limits, {
            "task_name": task_name, "limits_set": limits_set, "concurrency_limit": concurrency_limit,
            "requests_per_second": requests_per_second, "channel": self.db.channel})
        assert row is not None
        return TaskControl.from_row(row)
