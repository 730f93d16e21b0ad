"""OpenTelemetry tracing, when ``opentelemetry-api`` is installed (``pip install 'queuer[otel]'``).

Adding a job starts a PRODUCER span ("send <task>") and stores its W3C trace
context with the job (``options["trace"]``); every attempt runs in a CONSUMER
span ("process <task>") that continues it, so a job's trace holds the request
that added it, the producer span and each attempt. Attributes follow the
messaging semantic conventions, plus ``queuer.*`` for rid, attempt and outcome.

Without the package, or with the API but no tracer provider set up (no SDK),
nothing here does any work (the worker asks a ``Switch``, which costs one clock read per job).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from uuid import UUID

try:
    from opentelemetry import propagate, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError:  # the optional extra is not installed
    ENABLED = False
else:
    ENABLED = True

if TYPE_CHECKING:
    from queuer.model.context import JobContext
    from queuer.model.rows import ClaimedJob, Outcome

SYSTEM = "queuer"
TRACER_NAME = "queuer"


def active() -> bool:
    """True when spans would go somewhere: the API is installed and a real provider is set."""
    if not ENABLED:
        return False
    return not isinstance(trace.get_tracer_provider(), (trace.ProxyTracerProvider, trace.NoOpTracerProvider))


class Switch:
    """``active()`` for a hot loop: once on it stays on; while off it is asked again once a second
    (the global provider is set once, maybe after the worker started)."""

    def __init__(self) -> None:
        self._on = False
        self._next_check = 0.0
        self.tracer: Any = None  # got once, when tracing turns on

    def on(self) -> bool:
        if self._on:
            return True
        now = time.monotonic()
        if now < self._next_check:
            return False
        self._next_check = now + 1.0
        if active():
            self.tracer = _tracer()
            self._on = True
        return self._on


def _tracer() -> Any:
    # Asked when tracing turns on, not at import: the provider may be set up after queuer is imported.
    return trace.get_tracer(TRACER_NAME)


class Sending:
    """The PRODUCER spans of one add_job or add_jobs call: one per job, ended once the insert is done."""

    def __init__(self, parent: Any = None) -> None:
        self._spans: list[Any] = []
        self.enabled = active()  # asked once per call, not once per job of a batch
        self._tracer = _tracer() if self.enabled else None
        self._parent = parent  # a context the spans continue (a workflow's); None: the current one

    def start(self, task_name: str) -> dict[str, str] | None:
        """Start a job's span; return the trace context to store with it (None when not traced)."""
        if not self.enabled or self._tracer is None:
            return None
        span = self._tracer.start_span(
            f"send {task_name}", context=self._parent, kind=SpanKind.PRODUCER, attributes={
                "messaging.system": SYSTEM,
                "messaging.operation.type": "send",
                "messaging.operation.name": "send",
                "messaging.destination.name": task_name,
                "queuer.task": task_name,
            })
        self._spans.append(span)
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        return carrier or None

    def sent(self, rids: list[UUID]) -> None:
        """The insert committed: name each span's job and end the spans."""
        for index, span in enumerate(self._spans):
            if index < len(rids):  # a duplicate skipped by its unique key has no rid
                span.set_attribute("messaging.message.id", str(rids[index]))
                span.set_attribute("queuer.job.rid", str(rids[index]))
            span.end()
        self._spans = []

    def failed(self, exc: BaseException) -> None:
        for span in self._spans:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            span.end()
        self._spans = []


def workflow_context(workflow_id: str) -> Any:
    """The trace a new workflow's jobs continue: a span "workflow <id>" (ended at once; its
    jobs' spans are its children). None when not traced."""
    if not active():
        return None
    span = _tracer().start_span(f"workflow {workflow_id}", kind=SpanKind.PRODUCER,
                                attributes={"messaging.system": SYSTEM, "queuer.workflow.id": workflow_id})
    span.end()
    return trace.set_span_in_context(span)


@contextlib.contextmanager
def sending(parent: Any = None) -> Iterator[Sending]:
    """Spans for the jobs added inside the block; on an exception they end with it recorded."""
    spans = Sending(parent)
    try:
        yield spans
    except BaseException as exc:
        spans.failed(exc)
        raise


@contextlib.contextmanager
def processing(job: ClaimedJob, tracer: Any) -> Iterator[Any]:
    """The CONSUMER span of one attempt, continuing the trace stored with the job."""
    stored = job.options.get("trace") if isinstance(job.options, dict) else None
    parent = None
    if isinstance(stored, dict):
        try:
            parent = propagate.extract({k: v for k, v in stored.items() if isinstance(v, str)})
        except Exception:  # a malformed row starts a trace of its own; it must not end the job thread
            parent = None
    with tracer.start_as_current_span(
        f"process {job.task_name}", context=parent, kind=SpanKind.CONSUMER,
        record_exception=False, set_status_on_exception=False, attributes={
            "messaging.system": SYSTEM,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": job.task_name,
            "messaging.message.id": str(job.rid),
            "queuer.task": job.task_name,
            "queuer.job.rid": str(job.rid),
            "queuer.job.attempt": job.attempt,
        },
    ) as span:
        yield span


def record_exception(exc: BaseException) -> None:
    """Record a task's exception on the attempt's span (the current one in its thread)."""
    if active():
        span = trace.get_current_span()
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


def set_outcome(span: Any, outcome: Outcome | None, context: JobContext) -> None:
    """How the attempt ended: succeeded, failed, retry, snooze, crashed, cancelled, timed_out or lost."""
    if context.is_cancelled():
        reason = context.cancel_reason or ""
        value = "timed_out" if reason.startswith("timed out") else "cancelled" if "cancel" in reason else "lost"
    else:
        value = outcome.status.lower() if outcome is not None else "lost"
    span.set_attribute("queuer.job.outcome", value)
    if value in ("failed", "retry", "timed_out", "lost", "crashed") and outcome is not None and outcome.error:
        span.set_status(Status(StatusCode.ERROR, outcome.error.splitlines()[0]))


