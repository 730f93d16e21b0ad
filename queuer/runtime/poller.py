"""Poller: claims jobs when there is room, woken by NOTIFY, with a polling fallback."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from uuid import UUID

from psycopg.errors import UniqueViolation

from queuer.database.attempt_db import AttemptDB
from queuer.model.rows import ClaimedJob, ClaimKey
from queuer.model.task import Task
from queuer.runtime.dispatcher import Dispatcher
from queuer.runtime.loop import BackgroundLoop

log = logging.getLogger("queuer.poller")

# A limited task with no room is checked again this often even without an event.
LIMIT_RECHECK_SECONDS = 0.5
SERIAL_KEY_RETRY_SECONDS = 0.005
# Claims go on from where the last one ended (see claim_jobs_after), and start from
# the start of the queue at least this often, to find jobs put back behind the cursor.
FULL_CLAIM_EVERY_SECONDS = 1.0
# With no suspect known, one is looked for this often anyway (a rescue's notification may be missed).
SUSPECT_LOOK_SECONDS = 5.0
MIN_SUSPECT_LOOK_SECONDS = 0.2


class Poller(BackgroundLoop):
    def __init__(
        self,
        attempt_db: AttemptDB,
        dispatcher: Dispatcher,
        worker_rid: Callable[[], UUID],
        tasks: Callable[[], Mapping[str, Task]],
        poll_interval: float,
        default_max_attempts: int,
        default_timeout: float | None,
        default_crash_budget: int,
    ) -> None:
        super().__init__("poller")
        self.attempt_db = attempt_db
        self.dispatcher = dispatcher
        self.worker_rid = worker_rid
        self.tasks = tasks
        self.interval = poll_interval
        self.default_max_attempts = default_max_attempts
        self.default_timeout = default_timeout
        self.default_crash_budget = default_crash_budget
        self.claimed_total = 0
        # A limited task had no room: another worker's job ending may make some.
        self.waiting_for_limits = False
        # When to look for suspects (jobs to run in a process of their own) next, in time.monotonic();
        # 0: at the next round (at start, and after a rescue may have made some).
        self._suspects_look_at = 0.0
        # Where the last full batch ended in claim order; None: the next claim starts at the start.
        self._cursor: ClaimKey | None = None
        self._rewinds = 0  # bumped by rewind(), from any thread
        self._full_claim_due = 0.0
        # The free tasks had nothing due when last asked: not asked again before this time
        # (their next due job, or the poll interval) unless jobs were added or put back meanwhile.
        self._free_idle_until = 0.0

    def tick(self) -> float | None:
        if not self.dispatcher.accepting:
            return None
        try:
            return self._claim_round()
        except UniqueViolation:
            # Two workers took jobs with the same serial_key at once; the
            # index let one win and this claim was rolled back. Go again.
            log.debug("claim lost a serial-key race; retrying")
            return SERIAL_KEY_RETRY_SECONDS

    def _claim_round(self) -> float | None:
        tasks = self.tasks()
        free = [name for name, task in tasks.items() if not task.limited and not task.grouped]
        limited = [task for task in tasks.values() if task.limited]
        grouped = [task for task in tasks.values() if task.grouped]
        room = self.dispatcher.capacity()
        if room > 0 and tasks and time.monotonic() >= self._suspects_look_at:
            # A suspect takes one free slot, not a claim's worth: it waits for nothing else.
            taken = self._claim_suspects(free, limited, grouped, room)
            if taken is None:
                return None
            room -= taken
        if room < self.dispatcher.worth_claiming() or not tasks:
            return None  # a finishing job wakes us once a claim is worth its round trip
        waits: list[float] = []
        waits.append(max(0.0, self._suspects_look_at - time.monotonic()))
        if free and time.monotonic() < self._free_idle_until:
            waits.append(self._free_idle_until - time.monotonic())
            free = []
        if free:
            asked = time.monotonic()
            rewinds = self._rewinds
            after = self._cursor if asked < self._full_claim_due else None
            if after is None:
                self._full_claim_due = asked + FULL_CLAIM_EVERY_SECONDS
            jobs = self.attempt_db.claim(self.worker_rid(), free, room, self.default_max_attempts,
                                         self.default_timeout, self.default_crash_budget, after=after)
            self.dispatcher.sizer.claimed(time.monotonic() - asked)
            # A full batch: more may follow it. A short one: the next claim looks from the start.
            full = len(jobs) == room and rewinds == self._rewinds
            self._cursor = jobs[-1].claim_key if full else None
            claimed = self._take(jobs)
            if claimed is None:
                return None
            if claimed == room:
                return 0.0  # there may be more: claim again as soon as there is room
            room -= claimed
            # Drained for now: sleep until NOTIFY, the next scheduled job's due
            # time, or the polling fallback, whichever comes first.
            due_in = self.attempt_db.seconds_until_next_due(free)
            if due_in is not None:
                waits.append(due_in)
            if not claimed and (limited or grouped):  # others to claim for: do not ask again for nothing
                self._free_idle_until = time.monotonic() + min(self.interval, due_in if due_in is not None else
                                                                self.interval)
        self.waiting_for_limits = False
        for task in limited:
            if room <= 0:
                break
            jobs, token_wait = self.attempt_db.claim_limited(
                self.worker_rid(), task.name, room, task.effective_concurrency_limit, task.requests_per_second,
                self.default_max_attempts, self.default_timeout, self.default_crash_budget,
            )
            claimed = self._take(jobs)
            if claimed is None:
                return None
            room -= claimed
            if token_wait is not None:
                waits.append(token_wait)
            if not claimed:
                self.waiting_for_limits = True
                waits.append(LIMIT_RECHECK_SECONDS)
        for task in grouped:
            if room <= 0:
                break
            jobs = self.attempt_db.claim_grouped(self.worker_rid(), task, room, self.default_max_attempts,
                                                 self.default_timeout, self.default_crash_budget)
            claimed = self._take(jobs)
            if claimed is None:
                return None
            room -= claimed
            if room > 0 and task.group_requests_per_second:
                waits.append(1.0 / task.group_requests_per_second)  # when a key's next token is due
            if not claimed:
                # Nothing due, or every group at its limit: a job ending elsewhere may make room.
                self.waiting_for_limits = True
                waits.append(LIMIT_RECHECK_SECONDS)
        return min([self.interval, *waits])

    def _claim_suspects(self, free: list[str], limited: list[Task], grouped: list[Task], room: int) -> int | None:
        """Claim suspects up to ``room``, within their tasks' limits; None when stopping."""
        names = [*free, *(task.name for task in limited), *(task.name for task in grouped)]
        due, next_in = self.attempt_db.suspects_due(names)
        defaults = (self.default_max_attempts, self.default_timeout, self.default_crash_budget)
        taken = 0
        for task in [None, *(t for t in limited + grouped if t.name in due)]:
            if room - taken <= 0:
                break
            if task is None:
                due_free = [name for name in free if name in due]
                jobs = self.attempt_db.claim(self.worker_rid(), due_free, room, *defaults, suspects=True) \
                    if due_free else []
            elif task.limited:
                jobs, _ = self.attempt_db.claim_limited(
                    self.worker_rid(), task.name, room - taken, task.effective_concurrency_limit,
                    task.requests_per_second, *defaults, suspects=True)
            else:
                jobs = self.attempt_db.claim_grouped(self.worker_rid(), task, room - taken, *defaults, suspects=True)
            if self._take(jobs, isolated=True) is None:
                return None
            taken += len(jobs)
        if taken == room and due:
            self._suspects_look_at = 0.0  # there may be more: look again at the next round
            return taken
        # Looked for again when the next is due; one due now was not claimable (held, its serial key busy, its
        # task at its limit): at the poll interval. With none, now and then all the same: a rescue's
        # notification may be missed (no session, a reconnect).
        wait = SUSPECT_LOOK_SECONDS if next_in is None else next_in
        if due:
            wait = min(wait, self.interval)
        self._suspects_look_at = time.monotonic() + max(wait, MIN_SUSPECT_LOOK_SECONDS)
        return taken

    def suspects_may_be_due(self) -> None:
        """A rescue may have made suspects: look for them at the next round."""
        self._suspects_look_at = 0.0

    def rewind(self) -> None:
        """Jobs went back into the queue (a rescue, a retry, a freed serial key): look from the start next."""
        self._rewinds += 1
        self._cursor = None
        self._free_idle_until = 0.0

    def jobs_added(self) -> None:
        """Jobs were added: the free tasks are worth a claim again."""
        self._free_idle_until = 0.0

    def _take(self, jobs: list[ClaimedJob], isolated: bool = False) -> int | None:
        """Hand claimed jobs to the dispatcher; None when stopping (they were given back)."""
        if not jobs:
            return 0
        self.claimed_total += len(jobs)
        if self.stopping or not self.dispatcher.accepting:
            self.attempt_db.release(self.worker_rid(), [(j.id, j.attempt) for j in jobs])
            return None
        self.dispatcher.submit(jobs, isolated=isolated)
        time.sleep(0)  # let a job thread start the first job before this thread goes on
        return len(jobs)
