"""WorkerRuntime: wires the loops of one running worker together.

    Notifier ──wakes──▶ Poller ──claims──▶ Dispatcher (buffer + thread pool)
                                             │ outcomes
    Heartbeat, MasterLoop, Watchdog          ▼
                                           Completer ──▶ job / job_archive
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Collection, Mapping
from typing import Any
from uuid import UUID

from queuer.config.settings import WorkerSettings
from queuer.database.attempt_db import AttemptDB
from queuer.database.control_db import ControlDB
from queuer.database.cron_db import CronDB
from queuer.database.forks import start_over_after_fork
from queuer.database.worker_db import WorkerDB
from queuer.model.context import JobServices
from queuer.model.options import OnError
from queuer.model.rows import Outcome
from queuer.model.task import Task
from queuer.model.worker import Worker, WorkerStatus
from queuer.observability.metrics import WorkerCounters
from queuer.payload.encryption import Keyring
from queuer.runtime.completer import Completer
from queuer.runtime.controls import TaskControls
from queuer.runtime.cron_loop import CronLoop
from queuer.runtime.dispatcher import Dispatcher
from queuer.runtime.executor import Executor
from queuer.runtime.heartbeat import Heartbeat
from queuer.runtime.loop import BackgroundLoop
from queuer.runtime.master import MasterLoop
from queuer.runtime.notifier import Event, EventKind, Notifier
from queuer.runtime.poller import Poller
from queuer.runtime.watchdog import Watchdog

log = logging.getLogger("queuer.worker")

# Without a session there is no NOTIFY to wake the poller: it polls this often.
SESSIONLESS_POLL = 0.2


class WorkerRuntime:
    def __init__(
        self,
        name: str,
        max_concurrency: int,
        tasks: Mapping[str, Task],
        attempt_db: AttemptDB,
        worker_db: WorkerDB,
        cron_db: CronDB,
        control_db: ControlDB,
        notifier: Notifier,
        settings: WorkerSettings,
        default_on_error: OnError | None,
        resources: Mapping[str, Any],
        next_interval_funcs: Mapping[str, Callable[..., Any]] | None = None,
        keyring: Keyring | None = None,
        on_stopped: Callable[[], None] | None = None,
        worker_rid: UUID | None = None,
        worker_options: dict[str, Any] | None = None,
        job_services: JobServices | None = None,
    ) -> None:
        self.name = name
        self.max_concurrency = max_concurrency
        self.tasks = tasks
        self.attempt_db = attempt_db
        self.worker_db = worker_db
        self.notifier = notifier
        self.settings = settings
        self._worker_rid: UUID = worker_rid or uuid.uuid4()
        self._worker_options = worker_options
        self.worker: Worker | None = None
        self._stop_lock = threading.Lock()
        self.stopped = threading.Event()
        self._stopping = False
        self._on_stopped = on_stopped
        self.completer = Completer(
            attempt_db, lambda: self._worker_rid, settings.completer_batch_size, settings.completer_flush_interval
        )
        executor = Executor(tasks, keyring, next_interval_funcs, max_result_bytes=settings.max_payload_bytes,
                            max_snoozes=settings.max_snoozes)
        self.dispatcher = Dispatcher(
            executor, max_concurrency, settings.prefetch, self.completer.add, self._wake_poller, default_on_error,
            resources, confirm_start=self._confirm_start, services=job_services, on_crash=self._charge_crash,
        )
        self.controls = TaskControls(control_db, self._release_unstarted)
        self.poller = Poller(
            attempt_db,
            self.dispatcher,
            lambda: self._worker_rid,
            lambda: self.controls.effective(self.tasks),
            settings.poll_interval if attempt_db.db.has_session else min(settings.poll_interval, SESSIONLESS_POLL),
            default_on_error.max_attempts if default_on_error else 1,
            default_on_error.timeout_seconds if default_on_error else None,
            settings.crash_budget,
        )
        self.has_session = attempt_db.db.has_session
        self.heartbeat = Heartbeat(
            worker_db, attempt_db, self, settings.heartbeat_interval,
            session_ok=self.notifier.lock_held.is_set if self.has_session else lambda: True,
            watch_cancels=not self.has_session,
        )
        self.master = MasterLoop(worker_db, attempt_db, lambda: self._worker_rid, settings)
        self.watchdog = Watchdog(self.dispatcher)
        self.scheduler = CronLoop(cron_db)
        self.loops: list[BackgroundLoop] = [
            self.completer, self.poller, self.watchdog, self.heartbeat, self.master, self.scheduler,
        ]
        start_over_after_fork(self)

    @property
    def worker_rid(self) -> UUID:
        return self._worker_rid

    def counters(self) -> WorkerCounters:
        return WorkerCounters(self.poller.claimed_total, self.dispatcher.started_total,
                              dict(self.completer.outcome_counts), self.dispatcher.run_times)

    def after_fork_in_child(self) -> None:
        """A forked child (a suspect's process, a forking server) is not this worker: its threads did not
        come along. It hears none of the worker's events, and a stop there stops nothing of the parent's."""
        self.notifier.unsubscribe(self._on_events)
        self._stop_lock = threading.Lock()
        self._stopping = True
        self.stopped = threading.Event()
        self.stopped.set()

    # -- life cycle -------------------------------------------------------------

    def start(self) -> Worker:
        self.worker = self.worker_db.activate(
            self._worker_rid, self.name, self.max_concurrency, list(self.tasks), self._worker_options,
            self._liveness(),
        )
        self.notifier.subscribe(self._on_events, lambda only_ends: self.poller.waiting_for_limits)
        self.notifier.on_reconnect(self._wake_poller)
        self.notifier.on_disconnect(self.heartbeat.wake)
        self._hold_liveness_lock()
        for loop in self.loops:
            loop.start()
        log.info("worker %s (%s) started: %d threads, tasks %s",
                 self.name, self._worker_rid, self.max_concurrency, ", ".join(self.tasks) or "(none)")
        return self.worker

    def stop(self, timeout: float | None = None) -> None:
        """Stop claiming, release unstarted jobs, let running ones finish, flush, mark STOPPED."""
        with self._stop_lock:
            if self._stopping:
                self.stopped.wait()
                return
            self._stopping = True
        timeout = self.settings.shutdown_timeout if timeout is None else timeout
        self.dispatcher.accepting = False
        self.poller.stop()
        self._release_unstarted()
        self._set_status(WorkerStatus.STOPPING)
        if not self.dispatcher.wait_idle(timeout):
            self._requeue_running(timeout)
        self.watchdog.stop()
        self.scheduler.stop()
        self.completer.stop()
        self.completer.drain(timeout=10.0)
        self.heartbeat.stop()
        self.master.stop()
        self.notifier.unsubscribe(self._on_events)
        self.dispatcher.shutdown()
        self.worker = self._set_status(WorkerStatus.STOPPED) or self.worker
        self.notifier.hold_lock(None)
        log.info("worker %s (%s) stopped", self.name, self._worker_rid)
        self.stopped.set()
        if self._on_stopped is not None:
            self._on_stopped()

    def _requeue_running(self, timeout: float) -> None:
        """Put attempts still running at the shutdown timeout back at once, each charged a crash."""
        running = self.dispatcher.held()
        try:
            requeued = self.attempt_db.requeue_abandoned(self._worker_rid, running)
            log.warning("%d job(s) still running after the %.1fs shutdown timeout were put back in the queue",
                        requeued, timeout)
        except Exception:
            log.exception("could not put back %d running job(s); the master re-queues them once this "
                          "worker is gone", len(running))
        self.dispatcher.end_all("the worker shut down before the attempt finished")

    def _liveness(self) -> str:
        # Without a session (a transaction pooler, no direct URL) only the heartbeat tells.
        return "session" if self.has_session else "heartbeat"

    def _hold_liveness_lock(self) -> None:
        if not self.has_session:
            return
        assert self.worker is not None and self.worker.id is not None
        key = (self.worker_db.lock_space, self.worker.id % 2**31)
        if not self.notifier.hold_lock(key):
            log.warning("the liveness lock is not held yet; heartbeating fast until the session is back")

    def _confirm_start(self, job_id: int, attempt: int) -> bool:
        return self.attempt_db.confirm_start(self._worker_rid, job_id, attempt)

    def _charge_crash(self, outcome: Outcome) -> None:
        """A suspect crashed the process it ran in alone: charge it (a job thread, at once)."""
        cause = outcome.error or "its process died"
        try:
            _requeued, failed = self.attempt_db.charge_crash(self._worker_rid, outcome.id, outcome.attempt, cause)
        except Exception:
            log.exception("could not charge a crash to job %s; it goes back to the queue uncharged at this "
                          "worker's next reconcile", outcome.id)
            return
        log.warning("job %s attempt %d crashed: %s; %s", outcome.id, outcome.attempt, cause,
                    "out of crash budget, it ended FAILED" if failed else "charged, it will run again")

    def _release_unstarted(self, task_names: Collection[str] | None = None) -> None:
        unstarted = self.dispatcher.take_back_unstarted(task_names)
        if unstarted:
            try:
                released = self.attempt_db.release(self._worker_rid, unstarted)
                log.info("released %d claimed but unstarted job(s) back to the queue", released)
            except Exception:
                log.exception("could not release %d unstarted job(s); the master will re-queue them", len(unstarted))

    def _set_status(self, status: WorkerStatus) -> Worker | None:
        try:
            return self.worker_db.set_status(self._worker_rid, status)
        except Exception:
            log.exception("could not mark worker %s %s", self._worker_rid, status.value)
            return None

    # -- callbacks from the loops -----------------------------------------------------

    def _wake_poller(self) -> None:
        self.poller.wake()

    def _on_events(self, events: list[Event]) -> None:
        wake = False
        for event in events:
            if event.kind in (EventKind.INSERT, EventKind.RETRY):
                if event.detail is None or event.detail in self.tasks:
                    wake = True
                    self.poller.jobs_added()
                if event.kind is EventKind.RETRY:
                    self.poller.suspects_may_be_due()
                    self.poller.rewind()  # and put jobs back behind where claims go on from
            elif event.kind is EventKind.END:
                wake = wake or self.poller.waiting_for_limits
            elif event.kind is EventKind.FREE:
                wake = True  # a serial key's next job may be claimed now
                self.poller.rewind()  # it may stand behind where claims go on from
            elif event.kind is EventKind.CANCEL and event.detail == str(self._worker_rid) and event.rid is not None:
                self.dispatcher.cancel(UUID(event.rid), "cancelled")
            elif event.kind is EventKind.CONTROL:
                self.controls.mark_stale()
                wake = True  # paused jobs are given back, resumed ones claimed, by the next claim round
            elif event.kind is EventKind.STOP and event.rid == str(self._worker_rid):
                self.stop_requested(graceful=event.detail == "graceful")
        if wake:
            self.poller.wake()

    def held(self) -> list[tuple[int, int]]:
        """Every attempt this worker owns: buffered, running, or with an unwritten outcome."""
        return self.dispatcher.held() + self.completer.held()

    def running(self) -> list[tuple[int, int]]:
        """(job id, attempt) of the attempts running on a thread now."""
        return self.dispatcher.running()

    def lost_attempt(self, job_id: int, reason: str) -> None:
        self.dispatcher.end_attempt(job_id, reason, None)

    def restart_dead_loops(self) -> None:
        if self._stopping:
            return
        for loop in [*self.loops, self.notifier]:
            if loop.started and not loop.alive and not loop.stopping:
                log.error("background loop %s died; restarting it", loop.name)
                loop.start()

    def declared_dead(self) -> None:
        """The master declared us dead: our jobs were rescued. Drop them, re-register."""
        old = self._worker_rid
        self.dispatcher.end_all("the worker was declared dead; the job was rescued by another worker")
        self._worker_rid = uuid.uuid4()
        self.worker = self.worker_db.activate(
            self._worker_rid, self.name, self.max_concurrency, list(self.tasks), self._worker_options,
            self._liveness(),
        )
        self._hold_liveness_lock()
        log.error("worker %s was declared dead; its jobs went to other workers; re-registered as %s",
                  old, self._worker_rid)

    def stop_requested(self, graceful: bool) -> None:
        if self._stopping:
            return
        log.info("stop requested from outside (%s)", "graceful" if graceful else "now")
        timeout = None if graceful else 0.0
        threading.Thread(target=self.stop, args=(timeout,), name="queuer-stop", daemon=True).start()
