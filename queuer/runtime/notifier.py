"""Notifier: the LISTEN thread. One dedicated connection; reconnects with backoff.

Every NOTIFY on the schema's channel carries ``{"j": [[event, rid, detail], ...]}``.
Subscribers get the parsed list; after a reconnect they get ``on_reconnect`` so
they can catch up on anything sent while the connection was down.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from typing import Callable, Optional

import psycopg

from queuer.database.connection import Database
from queuer.errors import DatabaseUnreachableError
from queuer.runtime.loop import BackgroundLoop

log = logging.getLogger("queuer.notifier")


@dataclass(frozen=True)
class Event:
    """One job event: kind is insert, retry, end, cancel or stop."""

    kind: str
    rid: str | None  # text, turned into a UUID only by whoever needs one
    detail: str | None  # insert/retry: task name; end: status; cancel: worker rid


Subscriber = Callable[[list[Event]], None]


def parse_payload(payload: str) -> list[Event]:
    data = json.loads(payload)
    events = []
    for kind, rid, detail in data.get("j") or []:
        events.append(Event(kind, rid, detail))
    return events


class Notifier(BackgroundLoop):
    interval = 0.0  # the blocking read is the wait

    def __init__(self, db: Database, read_timeout: float = 1.0) -> None:
        super().__init__("notifier")
        self.db = db
        self.read_timeout = read_timeout
        self._conn: Optional[psycopg.Connection] = None
        self._subscribers: list[Subscriber] = []
        self._reconnect_callbacks: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self.connected = threading.Event()
        self._backoff = 0.1
        self._ever_connected = False

    def subscribe(self, fn: Subscriber) -> None:
        with self._lock:
            self._subscribers.append(fn)

    def unsubscribe(self, fn: Subscriber) -> None:
        with self._lock:
            if fn in self._subscribers:
                self._subscribers.remove(fn)

    def on_reconnect(self, fn: Callable[[], None]) -> None:
        with self._lock:
            self._reconnect_callbacks.append(fn)

    def ensure_started(self, timeout: float = 10.0) -> None:
        """Start the thread if needed and wait until LISTEN is active."""
        if not self.alive:
            self.start()
        self.connected.wait(timeout)

    def tick(self) -> float | None:
        if self._conn is None or self._conn.closed:
            if not self._connect():
                delay = self._backoff
                self._backoff = min(self._backoff * 2, 5.0)
                return delay
        assert self._conn is not None
        try:
            for notify in self._conn.notifies(timeout=self.read_timeout):
                self._dispatch(notify.payload)
                if self.stopping:
                    break
        except psycopg.Error as exc:
            log.warning("LISTEN connection lost (%s); reconnecting", exc.__class__.__name__)
            self._drop()
            return self._backoff
        return 0.0

    def stop(self, timeout: float | None = 10.0) -> None:
        # An empty notification ends the blocking read at once instead of after read_timeout.
        self._stopping.set()
        if self.connected.is_set():
            try:
                self.db.execute("SELECT pg_notify(%s, '{\"j\": []}')", (self.db.channel,))
            except Exception:
                pass  # the read times out soon anyway
        super().stop(timeout)

    def _connect(self) -> bool:
        try:
            conn = self.db.connect_session()
            conn.execute(f'LISTEN "{self.db.channel}"')  # type: ignore[arg-type]
        except (psycopg.Error, DatabaseUnreachableError) as exc:
            log.warning("cannot LISTEN on %s (%s); retrying", self.db.config.describe(), exc.__class__.__name__)
            self.connected.clear()
            return False
        self._conn = conn
        self._backoff = 0.1
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
        try:
            events = parse_payload(payload)
        except (ValueError, TypeError, KeyError):
            log.warning("ignoring malformed notification %r", payload[:200])
            return
        with self._lock:
            subscribers = list(self._subscribers)
        for fn in subscribers:
            self._safely(fn, events)

    @staticmethod
    def _safely(fn: Callable[..., None], *args: object) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("a notification subscriber failed; the listener goes on")

    def _drop(self) -> None:
        self.connected.clear()
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
        self._conn = None

    def on_stop(self) -> None:
        self._drop()
