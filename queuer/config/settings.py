"""Tuning of a worker's background loops; every value can come from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class WorkerSettings:
    """Tuning of a worker's background loops, and the payload limit; times are in seconds.

    A queuer made without ``settings=`` reads them from ``QUEUER_<FIELD>`` variables (``from_env``).
    A value out of range (a negative one, say) raises ValueError.
    """

    poll_interval: float = 2.0
    """Fallback poll when no NOTIFY arrives (seconds)."""
    prefetch: int | None = None
    """Jobs claimed beyond free threads, run from the local buffer; None = sized as the worker runs."""
    heartbeat_interval: float = 2.0
    """Seconds between heartbeats."""
    dead_after: float = 20.0
    """A worker without a session (heartbeat liveness) silent this long is declared dead."""
    hung_after: float = 600.0
    """A worker whose session is open but which has not heartbeated this long is declared hung and dead: far above any
    GIL pause of a long C call.
    """
    liveness_grace: float = 1.0
    """A worker whose session lock has been free (and which was silent) this long is dead."""
    restart_grace: float = 10.0
    """After a database restart, this long before a free lock counts (workers reconnect)."""
    liveness_interval: float = 0.25
    """How often the master checks liveness."""
    crash_budget: int = 5
    """Crashes a job may cost while it runs before it ends FAILED (``Options.crash_budget`` overrides)."""
    master_lease: float = 10.0
    """Seconds the master's lease lasts (renewed every quarter of it)."""
    prune_workers_after: float = 24 * 3600.0
    """Dead and stopped worker rows are deleted after this long."""
    shutdown_timeout: float = 30.0
    """How long ``stop()`` lets running jobs finish before giving up on them."""
    max_snoozes: int = 100
    """A job that snoozes (``raise queuer.Snooze(seconds)``) more often than this ends FAILED: a bound on a runaway."""
    max_payload_bytes: int = 1024 * 1024
    """``add_job`` refuses arguments larger than this (JSON bytes, positional and keyword together), and a task's result
    larger than this fails its job.
    """
    archive_retention: float | None = None
    """The master deletes archived jobs older than this many seconds (None: keep them): whole archive partitions at
    once, row by row only for the partition that straddles the cutoff.
    """
    archive_partition: float = 86400.0
    """The span of one archive partition (by the time jobs ended), aligned to the epoch: a day."""
    completer_batch_size: int = 200
    """Outcomes written in one statement at most."""
    completer_flush_interval: float = 0.0
    """Wait this long for more outcomes before writing a batch (0: write as soon as the last write is done; batches then
    grow with the load, one commit each).
    """

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and value < 0:
                raise ValueError(f"WorkerSettings.{f.name} must not be negative")
        if self.dead_after <= self.heartbeat_interval or self.hung_after <= self.heartbeat_interval:
            raise ValueError("dead_after and hung_after must be longer than heartbeat_interval")
        if self.crash_budget < 1:
            raise ValueError("WorkerSettings.crash_budget must be at least 1")
        if self.archive_partition < 60:
            raise ValueError("WorkerSettings.archive_partition must be at least 60 seconds")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WorkerSettings:
        """Read ``QUEUER_<FIELD>`` variables, e.g. ``QUEUER_HEARTBEAT_INTERVAL=5``."""
        env = os.environ if environ is None else environ
        values: dict[str, float | int] = {}
        for f in fields(cls):
            raw = env.get("QUEUER_" + f.name.upper())
            if raw:
                try:
                    integer = f.type in ("int", "int | None")  # the annotations are text here
                    values[f.name] = int(raw) if integer else float(raw)
                except ValueError:
                    raise ValueError(f"QUEUER_{f.name.upper()} must be a number, not {raw!r}") from None
        return cls(**values)  # type: ignore[arg-type]
