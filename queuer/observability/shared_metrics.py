"""Metrics of several worker processes on one port: each writes its counters to a shared folder,
the supervisor sums them at scrape time.

Every process writes ``<pid>.json`` (atomically, by rename) once a second; the
queue's depth and the workers by status come from the newest file, since every
process reads the same database.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from queuer.observability.metrics import RunTimes, Scrape, WorkerCounters

# Where a worker process started by ``queuer run --processes`` writes its metrics.
METRICS_DIR_VARIABLE = "QUEUER_METRICS_DIR"
WRITE_EVERY_SECONDS = 1.0
# A file not rewritten for this long belongs to a process that is gone.
STALE_SECONDS = 10.0


class ScrapeWriter:
    """In a worker process: writes ``read()`` to the shared folder once a second (``start()``/``stop()``)."""

    def __init__(self, folder: str, read: Callable[[], Scrape | None]) -> None:
        self.path = Path(folder) / f"{os.getpid()}.json"
        self.read = read
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="queuer-metrics-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.path.unlink(missing_ok=True)

    def _loop(self) -> None:
        while not self._stop.wait(WRITE_EVERY_SECONDS):
            scrape = self.read()
            if scrape is None:
                continue
            temporary = self.path.with_suffix(".tmp")
            temporary.write_text(json.dumps(asdict(scrape)))
            os.replace(temporary, self.path)


def read_shared(folder: str) -> Scrape | None:
    """The processes' scrapes, summed: counters added up, the queue as the newest file saw it."""
    now = time.time()
    scrapes: list[tuple[float, dict[str, Any]]] = []
    for path in Path(folder).glob("*.json"):
        try:
            age = now - path.stat().st_mtime
            if age <= STALE_SECONDS:
                scrapes.append((age, json.loads(path.read_text())))
        except (OSError, ValueError):
            continue  # being replaced right now, or gone: the next scrape has it
    if not scrapes:
        return None
    scrapes.sort(key=lambda item: item[0])
    newest = scrapes[0][1]
    counters = [s["counters"] for _, s in scrapes if s.get("counters")]
    total = None
    if counters:
        outcomes: dict[str, int] = {}
        run_times = RunTimes()
        for c in counters:
            for outcome, n in c["outcomes"].items():
                outcomes[outcome] = outcomes.get(outcome, 0) + n
            run_times.total += c["run_times"]["total"]
            run_times.per_bucket = [a + b for a, b in zip(run_times.per_bucket, c["run_times"]["per_bucket"])]
        total = WorkerCounters(sum(c["claimed"] for c in counters), sum(c["started"] for c in counters), outcomes,
                               run_times)
    return Scrape(any(s["running"] for _, s in scrapes),
                  [tuple(row) for row in newest["jobs"]] if newest.get("jobs") is not None else None,
                  [tuple(row) for row in newest["workers"]] if newest.get("workers") is not None else None,
                  total)
