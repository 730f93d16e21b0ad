"""Notifier: the session thread. One dedicated connection; reconnects with backoff.

It LISTENs: every NOTIFY on the schema's channel carries
``{"j": [[event, rid, detail], ...]}``. Subscribers get the parsed list; after
a reconnect they get ``on_reconnect`` so they can catch up on anything sent
while the connection was down.

It also holds the worker's liveness lock: a session advisory lock that
PostgreSQL frees the moment this process or this connection is gone, which is
how the master tells a dead worker from a busy one (see ``hold_lock``).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import psycopg

from queuer.database.backoff import Backoff
from queuer.database.connect import close_quietly
from queuer.database.connection import Database
from queuer.database.forks import start_over_after_fork
from queuer.errors import ConfigurationError, QueuerError
from queuer.runtime.loop import BackgroundLoop

log = logging.getLogger("queuer.notifier")

# Reconnects back off to this: a worker without its session heartbeats fast meanwhile.
MAX_BACKOFF = 1.0


class EventKind(str, Enum):
    """What a notification item reports (the first field of each item the SQL sends)."""

    INSERT = "insert"  # a job was added
    RETRY = "retry"  # a job is due again (retry, rescue, re-add)
    END = "end"  # a job ended
    CANCEL = "cancel"  # a running job was cancelled: its worker should stop it
    STOP = "stop"  # a worker was asked to stop
    FREE = "free"  # a serial key was freed
    CONTROL = "control"  # a task was paused, resumed or given new limits

    # The string's own hash, in C: every event is looked up by its kind.
    __hash__ = str.__hash__


_KINDS = {kind.value: kind for kind in EventKind}


@dataclass(frozen=True)
class Event:
    """One job event."""

    kind: EventKind
    rid: str | None  # text, turned into a UUID only by whoever needs one
    detail: str | None  # insert/retry: task name; end: status; cancel: worker rid; free: serial key
    extra: str | None = None  # insert/retry: status; end: task name


Subscriber = Callable[[list[Event]], None]

_NOT_END_MARKERS = tuple(f'"{kind.value}"' for kind in EventKind if kind is not EventKind.END)


def parse_payload(payload: str) -> list[Event]:
    data = json.loads(payload)
    events = []
    for item in data.get("j") or []:
        kind = _KINDS.get(item[0])
        if kind is not None:  # a kind a newer version sends is not ours to act on
            events.append(Event(kind, *item[1:4]))
    return events


class Notifier(BackgroundLoop):
    interval = 0.0  # the blocking read is the wait

    def __init__(self, db: Database, read_timeout: float = 1.0) -> None:
        super().__init__("notifier")
        self.db = db
        self.read_timeout = read_timeout
        self._conn: psycopg.Connection[dict[str, Any]] | None = None
        self._subscribers: list[tuple[Subscriber, Callable[[bool], bool]]] = []
        self._reconnect_callbacks: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self.connected = threading.Event()
        self._backoff = Backoff(first=0.05, ceiling=MAX_BACKOFF)
        self._ever_connected = False
        self._disconnect_callbacks: list[Callable[[], None]] = []
        # The liveness lock: the key wanted (set by any thread) and the key held
        # (changed only by this thread, which owns the connection).
        self._want_lock: tuple[int, int] | None = None
        self._held_lock: tuple[int, int] | None = None
        self.lock_held = threading.Event()
        self._inherited: list[psycopg.Connection[dict[str, Any]]] = []  # a parent's session: kept, never used or closed
        start_over_after_fork(self)

    def subscribe(self, fn: Subscriber, wants_ends: Callable[[bool], bool] = lambda only_ends: True) -> None:
        """Call ``fn(events)`` for each notification; ``wants_ends(True)`` says whether it
        wants notifications that only report ended jobs (the bulk of a busy queue's)."""
        with self._lock:
            self._subscribers.append((fn, wants_ends))

    def unsubscribe(self, fn: Subscriber) -> None:
        with self._lock:
            self._subscribers = [(f, w) for f, w in self._subscribers if f != fn]

    def on_reconnect(self, fn: Callable[[], None]) -> None:
        with self._lock:
            self._reconnect_callbacks.append(fn)

    def on_disconnect(self, fn: Callable[[], None]) -> None:
        with self._lock:
            self._disconnect_callbacks.append(fn)

    def hold_lock(self, key: tuple[int, int] | None, timeout: float = 5.0) -> bool:
        """Hold the session advisory lock ``key`` (None: release it); True once held."""
        if not self.db.has_session:
            return key is None
        with self._lock:
            self._want_lock = key
            if key != self._held_lock:
                self.lock_held.clear()
        if key is None and not self.alive:
            return True
        self.ensure_started(timeout)
        self._poke()
        return True if key is None else self.lock_held.wait(timeout)

    def ensure_started(self, timeout: float = 10.0) -> None:
        """Start the thread if needed and wait until LISTEN is active (no-op without a session)."""
        if not self.db.has_session:
            return
        if not self.alive:
            self.start()
        self.connected.wait(timeout)

    def tick(self) -> float | None:
        if self._conn is None or self._conn.closed:
            if not self._connect():
                return self._backoff.next()
        assert self._conn is not None
        try:
            self._sync_lock(self._conn)
            for notify in self._conn.notifies(timeout=self.read_timeout):
                self._dispatch(notify.payload)
                if self.stopping or self._want_lock != self._held_lock:
                    break
        except psycopg.Error as exc:
            log.warning("session connection lost (%s); reconnecting", exc.__class__.__name__)
            self._drop()
            return self._backoff.next()
        return 0.0

    def after_fork_in_child(self) -> None:
        """Right after a fork: start over with a session of the child's own. The parent's is kept,
        never used or closed; the locks are new (another thread may have held one at the fork)."""
        self._lock = threading.Lock()
        if self._conn is not None:
            self._inherited.append(self._conn)
            self._conn = None
        self.connected = threading.Event()
        self._want_lock = self._held_lock = None
        self.lock_held = threading.Event()
        self._ever_connected = False

    def _sync_lock(self, conn: psycopg.Connection[dict[str, Any]]) -> None:
        want = self._want_lock
        if want == self._held_lock:
            return
        if self._held_lock is not None:
            conn.execute(self.db.queries.liveness_unlock, dict(zip(("space", "key"), self._held_lock)))
            self._held_lock = None
        if want is not None:
            row = conn.execute(self.db.queries.liveness_try_lock, dict(zip(("space", "key"), want))).fetchone()
            if not row or not row["locked"]:
                log.warning("liveness lock %s is held by another session; retrying", want)
                return
            self._held_lock = want
            if self._want_lock == want:
                self.lock_held.set()

    def _poke(self) -> None:
        # An empty notification ends the blocking read at once instead of after read_timeout.
        if self.connected.is_set():
            try:
                self.db.execute(self.db.queries.wake_listener, {"channel": self.db.channel})
            except Exception:
                pass  # the read times out soon anyway

    def stop(self, timeout: float | None = 10.0) -> None:
        self._stopping.set()
        self._poke()
        super().stop(timeout)

    def _connect(self) -> bool:
        conn: psycopg.Connection[dict[str, Any]] | None = None
        try:
            conn = self.db.connect_session()
            conn.execute(f'LISTEN "{self.db.channel}"')
        except (psycopg.Error, QueuerError) as exc:
            if conn is not None:
                close_quietly(conn)  # opened, but LISTEN failed: not leaked
            if isinstance(exc, ConfigurationError):  # a rotated password, a dropped role: say what
                log.error("cannot LISTEN on %s: %s; retrying", self.db.config.describe(), exc)
            else:
                log.warning("cannot LISTEN on %s (%s); retrying", self.db.config.describe(), exc.__class__.__name__)
            self.connected.clear()
            return False
        self._conn = conn
        self._backoff.reset()
        self.connected.set()
        reconnected, self._ever_connected = self._ever_connected, True
        if reconnected:
            log.info("LISTEN connection restored")
            with self._lock:
                callbacks = list(self._reconnect_callbacks)
            for fn in callbacks:
                self._safely(fn)
        return True

    def _dispatch(self, payload: str) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        only_ends = not any(marker in payload for marker in _NOT_END_MARKERS)
        if only_ends:
            # Every worker gets every batch of ended jobs; most have nobody waiting for them.
            subscribers = [(fn, w) for fn, w in subscribers if w(True)]
            if not subscribers:
                return
        try:
            events = parse_payload(payload)
        except (ValueError, TypeError, KeyError):
            log.warning("ignoring malformed notification %r", payload[:200])
            return
        for fn, _ in subscribers:
            self._safely(fn, events)

    @staticmethod
    def _safely(fn: Callable[..., None], *args: object) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("a notification subscriber failed; the listener goes on")

    def _drop(self) -> None:
        was_connected = self.connected.is_set()
        self.connected.clear()
        self._held_lock = None
        self.lock_held.clear()
        if was_connected:
            with self._lock:
                callbacks = list(self._disconnect_callbacks)
            for fn in callbacks:
                self._safely(fn)
        if self._conn is not None:
            close_quietly(self._conn)
        self._conn = None

    def on_stop(self) -> None:
        self._drop()

