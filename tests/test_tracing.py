"""OpenTelemetry: a job's trace holds its producer span and a consumer span per attempt."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading

import pytest

import queuer
from queuer import BatchJob, JobStatus, OnError
from tests.support import wait_until

trace = pytest.importorskip("opentelemetry.trace")
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    # The global provider can be set once per process: every test of this module shares it.
    memory = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return memory


@pytest.fixture
def spans(exporter: InMemorySpanExporter) -> InMemorySpanExporter:
    exporter.clear()
    return exporter


def flaky() -> str:
    if queuer.current_job().attempt == 1:
        raise ValueError("first attempt fails")
    return "ok"


def trace_of(spans: InMemorySpanExporter, rid) -> list:
    """Every finished span in the trace of the job with this rid."""
    mine = [s for s in spans.get_finished_spans() if s.attributes.get("queuer.job.rid") == str(rid)]
    trace_ids = {s.context.trace_id for s in mine}
    assert len(trace_ids) == 1, f"the job's spans are in {len(trace_ids)} traces"
    return [s for s in spans.get_finished_spans() if s.context.trace_id in trace_ids]


def test_one_trace_per_job_with_the_producer_and_every_attempt(make_queuer, spans):
    q = make_queuer(OnError(max_retries=1, retry_delay=0, retry_jitter=0, timeout=None))
    q.add_task(flaky)
    q.start()
    first, second = q.add_job(flaky), q.add_job(flaky)
    for job in (first, second):
        assert q.wait_for_job_finished(job.rid, 10).status == JobStatus.SUCCEEDED
    wait_until(lambda: len([s for s in spans.get_finished_spans() if s.kind == SpanKind.CONSUMER]) == 4,
               message="four attempts traced")

    traced = trace_of(spans, first.rid)
    assert all(s.attributes.get("queuer.job.rid") == str(first.rid) for s in traced)  # nothing of the other job
    producer = [s for s in traced if s.kind == SpanKind.PRODUCER]
    consumers = sorted((s for s in traced if s.kind == SpanKind.CONSUMER), key=lambda s: s.attributes["queuer.job.attempt"])
    assert len(producer) == 1 and len(consumers) == 2
    assert producer[0].name == "send flaky" and producer[0].attributes["messaging.destination.name"] == "flaky"
    assert producer[0].attributes["messaging.system"] == "queuer"
    for span in consumers:
        assert span.name == "process flaky"
        assert span.parent.span_id == producer[0].context.span_id
        assert span.attributes["messaging.message.id"] == str(first.rid)
        assert span.attributes["messaging.operation.type"] == "process"
    assert [s.attributes["queuer.job.outcome"] for s in consumers] == ["retry", "succeeded"]
    failed = consumers[0]
    assert failed.status.status_code == StatusCode.ERROR
    assert [e.name for e in failed.events] == ["exception"]
    assert failed.events[0].attributes["exception.type"] == "ValueError"
    assert consumers[1].status.status_code != StatusCode.ERROR
    assert trace_of(spans, second.rid)[0].context.trace_id != producer[0].context.trace_id


def test_a_job_continues_the_trace_of_the_request_that_added_it(make_queuer, spans):
    q = make_queuer()
    q.add_task(len)
    q.start()
    tracer = trace.get_tracer("web-app")
    with tracer.start_as_current_span("POST /orders") as request:
        rids = q.add_jobs([BatchJob(len, ["abc"]), BatchJob(len, ["de"])])
    results = [q.wait_for_job_finished(rid, 10).result for rid in rids]
    assert results == [3, 2]
    wait_until(lambda: len([s for s in spans.get_finished_spans() if s.kind == SpanKind.CONSUMER]) == 2,
               message="both attempts traced")
    for rid in rids:
        traced = trace_of(spans, rid)
        assert {s.context.trace_id for s in traced} == {request.get_span_context().trace_id}
        producer = next(s for s in traced if s.kind == SpanKind.PRODUCER and s.attributes.get("queuer.job.rid") == str(rid))
        assert producer.parent.span_id == request.get_span_context().span_id


def test_cancelled_and_timed_out_attempts_say_so(make_queuer, spans):
    started = threading.Event()

    async def sleeper() -> None:
        started.set()
        await asyncio.sleep(10)

    q = make_queuer(OnError(max_retries=0, timeout=None))
    q.add_task(sleeper)
    q.start()
    job = q.add_job(sleeper)
    assert started.wait(10)
    q.cancel_job(job.rid)
    timed = q.add_job_with_options(queuer.Options(on_error=OnError(timeout=0.2, max_retries=0)), sleeper)
    assert q.wait_for_job_finished(timed.rid, 10).status == JobStatus.FAILED

    def outcome(rid):
        found = [s for s in spans.get_finished_spans()
                 if s.kind == SpanKind.CONSUMER and s.attributes.get("queuer.job.rid") == str(rid)]
        return found and found[0].attributes["queuer.job.outcome"]

    assert wait_until(lambda: outcome(job.rid), message="cancelled attempt traced") == "cancelled"
    assert wait_until(lambda: outcome(timed.rid), message="timed-out attempt traced") == "timed_out"


def test_a_malformed_stored_trace_context_starts_a_new_trace_and_the_worker_goes_on(make_queuer, spans):
    # The context is read from the row: one edited (or written by another client) into
    # a wrong shape must not end the job thread that reads it.
    q = make_queuer(max_concurrency=1)
    q.add_task(len)
    bad = [q.add_job(len, "abc"), q.add_job(len, "de")]
    for job, stored in zip(bad, ['{"trace": {"traceparent": 5}}', '{"trace": {"baggage": 3}}']):
        q.db.execute(f"UPDATE {q.db.queries.schema_quoted}.job SET options = %(o)s::jsonb WHERE rid = %(r)s",
                     {"o": stored, "r": job.rid})
    q.start()
    assert [q.wait_for_job_finished(job.rid, 10).result for job in bad] == [3, 2]
    assert q.wait_for_job_finished(q.add_job(len, "x").rid, 10).result == 1
    consumers = wait_until(lambda: [s for s in spans.get_finished_spans() if s.kind == SpanKind.CONSUMER
                                    and s.attributes.get("queuer.job.rid") == str(bad[0].rid)],
                           message="the malformed job's attempt traced")
    assert consumers[0].parent is None


def test_without_opentelemetry_nothing_is_traced_and_jobs_still_run(db_config):
    # A process where the package cannot be imported: the stand-in for a plain install.
    from tests.support import db_env

    script = (
        "import sys; sys.modules['opentelemetry'] = None\n"
        "from queuer import new_queuer\nfrom queuer.observability import tracing\n"
        "assert tracing.ENABLED is False\n"
        "q = new_queuer('plain', 1)\n"
        "q.add_task(len)\n"
        "q.start()\n"
        "job = q.add_job(len, 'abcd')\n"
        "result = q.wait_for_job_finished(job.rid, 10).result\n"
        "stored = q.db.execute_one('SELECT options FROM ' + q.db.queries.schema_quoted + '.job_archive')\n"
        "print(result, stored['options'])\n"
        "q.stop()\n"
    )
    out = subprocess.run([sys.executable, "-c", script], env=db_env(db_config), capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["4", "None"]


def test_a_workflow_is_one_trace_including_the_jobs_its_jobs_add(make_queuer, spans):
    def grow() -> str:
        job = queuer.current_job()
        job.workflow.add_job("leaf", depends_on=[job.rid])
        job.workflow.commit()
        return "grew"

    def leaf() -> str:
        return "leaf"

    q = make_queuer()
    q.add_task(grow)
    q.add_task(leaf)
    wf = q.workflow("traced")
    root = wf.add_job(grow)
    wf.add_job(leaf, depends_on=[root])
    wf.commit()
    q.start()
    info = q.wait_for_workflow("traced", 20)
    assert info.status is JobStatus.SUCCEEDED and len(info.jobs) == 3
    rids = {str(job.rid) for job in info.jobs}

    def of_the_workflow(kind: SpanKind) -> list:
        return [s for s in spans.get_finished_spans() if s.kind == kind and s.attributes.get("queuer.job.rid") in rids]

    consumers = wait_until(lambda: len(of_the_workflow(SpanKind.CONSUMER)) == 3 and of_the_workflow(SpanKind.CONSUMER),
                           timeout=10)
    producers = of_the_workflow(SpanKind.PRODUCER)
    workflow_span = [s for s in spans.get_finished_spans() if s.name == "workflow traced"]
    assert len(producers) == 3 and len(workflow_span) == 1
    assert {s.context.trace_id for s in [*consumers, *producers, *workflow_span]} == {
        workflow_span[0].context.trace_id}
