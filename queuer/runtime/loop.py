"""BackgroundLoop: a thread that calls ``tick()`` until stopped.

An exception in ``tick()`` is logged and retried with a growing delay; it
never ends the thread silently. ``wake()`` cuts the current wait short.
"""

from __future__ import annotations

import logging
import threading

from queuer.database.backoff import Backoff

log = logging.getLogger("queuer.runtime")

# A failing loop retries at least this often (a failover is over within seconds).
MAX_ERROR_DELAY = 1.0


class BackgroundLoop:
    interval: float = 1.0
    """Seconds between ticks when tick() returns None."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors = 0  # consecutive failures, for health reporting

    # -- the loop -------------------------------------------------------------

    def tick(self) -> float | None:
        """Do one round of work; return seconds until the next round (None: ``interval``)."""
        raise NotImplementedError

    def on_stop(self) -> None:
        """Run in the loop's thread after the last tick (final flush, release)."""

    def _run(self) -> None:
        backoff = Backoff(first=0.05, ceiling=MAX_ERROR_DELAY)
        while not self._stopping.is_set():
            try:
                delay = self.tick()
                self.errors = 0
                backoff.reset()
            except Exception:
                self.errors += 1
                delay = backoff.next()
                log.exception("%s failed (attempt %d); retrying in %.2fs", self.name, self.errors, delay)
            if delay is None:
                delay = self.interval
            # Clear only a wake that was seen, so one set after a timeout is kept.
            if delay <= 0 or self._wake.wait(delay):
                self._wake.clear()
        try:
            self.on_stop()
        except Exception:
            log.exception("%s failed while stopping", self.name)

    # -- control --------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=f"queuer-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 10.0) -> None:
        self._stopping.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.warning("%s did not stop within %.1fs", self.name, timeout or 0)

    def wake(self) -> None:
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def started(self) -> bool:
        return self._thread is not None
