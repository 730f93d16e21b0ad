"""CronLoop: fires due cron schedules (any worker may; each tick fires once)."""

from __future__ import annotations

import logging

from queuer.database.cron_db import CronDB
from queuer.runtime.loop import BackgroundLoop

log = logging.getLogger("queuer.scheduler")

# New schedules registered by other processes are noticed within this time.
MAX_SLEEP = 5.0


class CronLoop(BackgroundLoop):
    def __init__(self, cron_db: CronDB) -> None:
        super().__init__("scheduler")
        self.cron_db = cron_db

    def tick(self) -> float | None:
        fired = self.cron_db.fire_due()
        if fired:
            log.debug("fired %d schedule tick(s)", fired)
        wait = self.cron_db.seconds_until_next()
        return MAX_SLEEP if wait is None else min(MAX_SLEEP, wait)
