"""Completer: collects attempt outcomes and writes them in batches.

A batch is flushed when it reaches ``batch_size`` or ``flush_interval`` after
its first outcome, in one fenced statement (see ``record_outcomes`` in
``database/sql/job.sql``). A failed flush keeps the outcomes and retries: the
statement is idempotent, as an outcome applies only while its attempt still
owns the job.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from uuid import UUID

from queuer.database.attempt_db import AttemptDB
from queuer.model.rows import Outcome
from queuer.runtime.loop import BackgroundLoop

log = logging.getLogger("queuer.completer")


class Completer(BackgroundLoop):
    interval = 1.0

    def __init__(
        self,
        attempt_db: AttemptDB,
        worker_rid: Callable[[], UUID],
        batch_size: int,
        flush_interval: float,
    ) -> None:
        super().__init__("completer")
        self.attempt_db = attempt_db
        self.worker_rid = worker_rid
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self._lock = threading.Lock()
        self._pending: list[Outcome] = []
        self._flushing: list[Outcome] = []  # the batch being written right now
        self._first_at = 0.0
        self.applied_total = 0
        self.outcome_counts: dict[str, int] = {}  # by SUCCEEDED / FAILED / RETRY, for metrics
        self.discarded_total = 0

    def add(self, outcome: Outcome) -> None:
        with self._lock:
            if not self._pending:
                self._first_at = time.monotonic()
                wake = True
            else:
                wake = len(self._pending) + 1 >= self.batch_size
            self._pending.append(outcome)
        if wake:
            self.wake()

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def held(self) -> list[tuple[int, int]]:
        """(job id, attempt) of every outcome not yet written: the worker still owns those jobs."""
        with self._lock:
            return [(o.id, o.attempt) for o in (*self._pending, *self._flushing)]

    def tick(self) -> float | None:
        with self._lock:
            if not self._pending:
                return None
            age = time.monotonic() - self._first_at
            if len(self._pending) < self.batch_size and age < self.flush_interval and not self.stopping:
                return self.flush_interval - age
        self.flush()
        return 0.0 if self.pending() else None

    def flush(self) -> None:
        with self._lock:
            batch = self._pending[: self.batch_size]
            del self._pending[: self.batch_size]
            self._flushing = batch
            if self._pending:
                self._first_at = time.monotonic()
        if not batch:
            return
        try:
            applied = self.attempt_db.record_outcomes(self.worker_rid(), batch)
        except Exception:
            with self._lock:  # keep them, in order, for the retry
                self._pending[:0] = batch
                self._flushing = []
                self._first_at = time.monotonic()
            raise
        with self._lock:
            self._flushing = []
        self.applied_total += len(applied)
        for outcome in batch:
            if outcome.id in applied:
                self.outcome_counts[outcome.status] = self.outcome_counts.get(outcome.status, 0) + 1
        discarded = [o for o in batch if o.id not in applied and not o.completed_in_tx]
        if discarded:
            self.discarded_total += len(discarded)
            log.warning(
                "%d outcome(s) discarded: those jobs were cancelled, timed out or rescued "
                "from this worker first (job ids %s)",
                len(discarded), ", ".join(str(o.id) for o in discarded[:10]),
            )

    def drain(self, timeout: float) -> bool:
        """Flush everything pending (used at shutdown); False if it could not."""
        deadline = time.monotonic() + timeout
        while self.pending():
            try:
                self.flush()
            except Exception as exc:
                if time.monotonic() > deadline:
                    log.error("could not write %d outcome(s) at shutdown: %s", self.pending(), exc)
                    return False
                time.sleep(0.2)
        return True
