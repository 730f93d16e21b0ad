"""The run supervisor behind ``queuer run module:factory``.

Loads the factory, installs SIGINT/SIGTERM handlers, and runs the Queuer the
factory gives (directly, or yielded by a context manager or an async context
manager) until a signal, or until the queue is empty in drain mode. With
``restart_on_failure`` a failure calls the factory again after a delay.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any, cast

from queuer.client.queuer import Queuer
from queuer.observability.logs import configure_logging
from queuer.observability.metrics import MetricsServer, Scrape
from queuer.observability.shared_metrics import METRICS_DIR_VARIABLE, ScrapeWriter

log = logging.getLogger("queuer.supervisor.runner")

POLL_SECONDS = 0.2
# With --shutdown-on-listener-failure: how long LISTEN may stay down.
LISTENER_GRACE_SECONDS = 30.0


@dataclass
class SupervisorOptions:
    max_concurrency: int | None = None
    mode: str = "continuous"  # or "drain"
    restart_on_failure: bool = False
    restart_delay: float = 5.0
    log_level: str = "INFO"
    shutdown_on_listener_failure: bool = False
    metrics_port: int | None = None


def load_factory(path: str | Callable[..., Any]) -> Callable[..., Any]:
    """``module:function`` or ``module.function``; a callable is used as it is."""
    if callable(path):
        return path
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"factory {path!r} must look like module:function or module.function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import {module_name!r} for factory {path!r}: {exc}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ValueError(f"{module_name!r} has no callable named {attr!r}")
    return cast(Callable[..., Any], factory)


@contextmanager
def as_queuer(result: Any) -> Iterator[Queuer]:
    """Accept a Queuer, a context manager or an async context manager yielding one."""
    if inspect.iscoroutine(result):
        result = asyncio.run(result)
    if isinstance(result, Queuer):
        yield result
    elif hasattr(result, "__aenter__"):
        loop = asyncio.new_event_loop()
        try:
            q = loop.run_until_complete(result.__aenter__())
            try:
                yield _checked(q)
            except BaseException as exc:
                if not loop.run_until_complete(result.__aexit__(type(exc), exc, exc.__traceback__)):
                    raise
            else:
                loop.run_until_complete(result.__aexit__(None, None, None))
        finally:
            loop.close()
    elif hasattr(result, "__enter__"):
        with result as q:
            yield _checked(q)
    else:
        raise TypeError(f"the factory returned {type(result).__name__}; return a Queuer or a context manager "
                        "yielding one")


def _checked(q: Any) -> Queuer:
    if not isinstance(q, Queuer):
        raise TypeError(f"the factory's context manager yielded {type(q).__name__}, not a Queuer")
    return q


class Supervisor:
    def __init__(self, factory: str | Callable[..., Any], options: SupervisorOptions) -> None:
        self.factory_path = factory
        self.options = options
        self._shutdown = threading.Event()
        self._current: Queuer | None = None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info("received %s: shutting down gracefully", signal.Signals(signum).name)
        self._shutdown.set()

    def _scrape(self) -> Scrape | None:
        q = self._current
        return q.scrape() if q is not None else None

    def run(self) -> int:
        configure_logging(self.options.log_level)
        try:
            factory = load_factory(self.factory_path)
        except ValueError as exc:
            log.error("%s", exc)
            return 2
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)
        metrics = None
        if self.options.metrics_port is not None:


            metrics = MetricsServer(self.options.metrics_port, self._scrape)
            metrics.start()
        shared = os.environ.get(METRICS_DIR_VARIABLE)
        writer = ScrapeWriter(shared, self._scrape) if shared else None  # one of several worker processes
        if writer is not None:
            writer.start()
        try:
            while True:
                try:
                    self._run_once(factory)
                    return 0
                except Exception:
                    log.exception("the worker failed")
                    if not self.options.restart_on_failure or self._shutdown.is_set():
                        return 1
                    log.info("restarting in %.1fs", self.options.restart_delay)
                    if self._shutdown.wait(self.options.restart_delay):
                        return 0
        finally:
            if metrics is not None:
                metrics.stop()
            if writer is not None:
                writer.stop()

    def _run_once(self, factory: Callable[..., Any]) -> None:
        with as_queuer(factory()) as q:
            self._current = q
            try:
                if self.options.max_concurrency is not None and not q.running:
                    q.max_concurrency = self.options.max_concurrency
                if not q.running:
                    q.start()
                self._supervise(q)
            finally:
                q.stop()
                self._current = None

    def _supervise(self, q: Queuer) -> None:
        listener_down_since: float | None = None
        clock = 0.0
        while not self._shutdown.wait(POLL_SECONDS):
            clock += POLL_SECONDS
            if q.wait_until_stopped(0):
                log.info("the worker stopped (stop request)")
                return
            if self.options.mode == "drain" and q.idle():
                log.info("queue drained: stopping")
                return
            if self.options.shutdown_on_listener_failure:
                if q.notifier.connected.is_set():
                    listener_down_since = None
                elif listener_down_since is None:
                    listener_down_since = clock
                elif clock - listener_down_since > LISTENER_GRACE_SECONDS:
                    raise RuntimeError("the LISTEN connection stayed down; shutting down as asked")
