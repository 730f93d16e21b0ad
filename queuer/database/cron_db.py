"""CronDB: cron schedules, and firing their due ticks exactly once."""

from __future__ import annotations

import json
import logging
from typing import Any

from queuer.database.connection import Database
from queuer.database.job_db import JobDB
from queuer.model.cron import CronSchedule, next_tick
from queuer.model.ids import new_rid
from queuer.model.rows import NewJob

log = logging.getLogger("queuer.scheduler")


class CronDB:
    def __init__(self, db: Database, job_db: JobDB) -> None:
        self.db = db
        self.job_db = job_db
        self.q = db.queries

    def _db_now(self) -> Any:
        row = self.db.execute_one(self.q.db_now)
        assert row is not None
        return row["db_now"]

    def upsert(self, name: str, cron: str, timezone: str, task_name: str,
               parameters: str, parameters_keyed: str) -> CronSchedule:
        row = self.db.execute_one(
            self.q.upsert_schedule,
            {
                "name": name, "cron": cron, "timezone": timezone, "task_name": task_name,
                "parameters": parameters, "parameters_keyed": parameters_keyed,
                "next_run_at": next_tick(cron, timezone, self._db_now()),
            },
        )
        assert row is not None
        return CronSchedule.from_row(row)

    def fire_due(self) -> int:
        """Add one job per due schedule and move each to its next tick after now.

        A tick missed while no worker ran therefore fires once, not once per
        missed tick. Row locks (SKIP LOCKED) make every tick fire exactly once
        whichever workers run this at the same moment.
        """
        fired = 0
        with self.db.connection() as conn:
            with conn.transaction():
                for row in conn.execute(self.q.due_schedules).fetchall():
                    job = NewJob(
                        rid=new_rid(),
                        task_name=row["task_name"],
                        parameters=json.dumps(row["parameters"]),
                        parameters_keyed=json.dumps(row["parameters_keyed"]),
                        # Where the job came from, for whoever reads it later (the web UI's job page).
                        options=json.dumps({"extra": {"schedule": row["name"]}}),
                        scheduled_at=row["next_run_at"],  # the tick it fires for
                    )
                    self.job_db.insert_job(job, conn)
                    conn.execute(self.q.advance_schedule, {
                        "name": row["name"],
                        "fired_at": row["db_now"],
                        "next_run_at": next_tick(row["cron"], row["timezone"], row["db_now"]),
                    })
                    fired += 1
        return fired

    def seconds_until_next(self) -> float | None:
        row = self.db.execute_one(self.q.seconds_until_next_schedule)
        value = row["wait_seconds"] if row else None
        return None if value is None else max(0.0, float(value))

    def list(self) -> list[CronSchedule]:
        return [CronSchedule.from_row(r) for r in self.db.execute(self.q.list_schedules)]

    def set_paused(self, name: str, paused: bool) -> CronSchedule | None:
        next_run_at = None
        if not paused:  # resuming: the next tick from now, no catching up
            current = self.db.execute_one(self.q.get_schedule, {"name": name})
            if current is None:
                return None
            next_run_at = next_tick(current["cron"], current["timezone"], current["db_now"])
        row = self.db.execute_one(self.q.set_schedule_paused,
                                  {"name": name, "paused": paused, "next_run_at": next_run_at})
        return CronSchedule.from_row(row) if row else None

    def remove(self, name: str) -> bool:
        return self.db.execute_one(self.q.delete_schedule, {"name": name}) is not None
