"""One attempt held by this worker, from the claim to its outcome."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from queuer.model.context import JobContext
from queuer.model.options import OnError
from queuer.model.rows import ClaimedJob


class AttemptState(Enum):
    BUFFERED = "buffered"  # claimed, waiting for a job thread
    RUNNING = "running"  # on a job thread
    ENDED = "ended"  # its outcome is known here (or it was taken back): nothing more counts


# Plain names for the states: reading an Enum member costs a descriptor call, and the
# dispatcher reads them several times per job.
BUFFERED, RUNNING, ENDED = AttemptState.BUFFERED, AttemptState.RUNNING, AttemptState.ENDED


@dataclass
class Attempt:
    job: ClaimedJob
    context: JobContext
    on_error: OnError | None
    state: AttemptState = BUFFERED
    isolated: bool = False  # a suspect: it runs in a process of its own (see isolation.py)
    deadline: float | None = None  # time.monotonic() after which it times out
    thread_busy: bool = False
