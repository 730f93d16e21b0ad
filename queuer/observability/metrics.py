"""Prometheus metrics for ``queuer run --metrics-port`` (needs the ``metrics`` extra)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from queuer.client.queuer import Queuer

log = logging.getLogger("queuer.observability.metrics")


class QueuerCollector:
    """Reads the current Queuer at scrape time: queue depth from the database, counters from the worker."""

    def __init__(self, current: Callable[[], Queuer | None]) -> None:
        self.current = current

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        from queuer.runtime.dispatcher import RUN_TIME_BUCKETS

        q = self.current()
        depth = GaugeMetricFamily("queuer_jobs", "Jobs in the queue by task and status", labels=["task", "status"])
        workers = GaugeMetricFamily("queuer_workers", "Workers by status", labels=["status"])
        up = GaugeMetricFamily("queuer_worker_up", "1 while this process's worker runs")
        claimed = CounterMetricFamily("queuer_jobs_claimed", "Attempts claimed by this worker")
        started = CounterMetricFamily("queuer_jobs_started", "Attempts this worker began to run")
        ended = CounterMetricFamily("queuer_job_outcomes", "Outcomes written by this worker", labels=["outcome"])
        run_time = HistogramMetricFamily("queuer_job_run_seconds", "How long tasks ran in this worker")
        if q is not None:
            try:
                schema = q.db.queries.schema_quoted
                for row in q.db.execute(f"SELECT task_name, status, count(*) AS n FROM {schema}.job GROUP BY 1, 2"):
                    depth.add_metric([row["task_name"], row["status"]], row["n"])
                for row in q.db.execute(f"SELECT status, count(*) AS n FROM {schema}.worker GROUP BY 1"):
                    workers.add_metric([row["status"]], row["n"])
            except Exception:
                log.warning("could not read queue depth for metrics", exc_info=True)
            runtime = q._runtime
            up.add_metric([], 1.0 if q.running else 0.0)
            if runtime is not None:
                claimed.add_metric([], runtime.poller.claimed_total)
                started.add_metric([], runtime.dispatcher.started_total)
                for outcome, n in runtime.completer.outcome_counts.items():
                    ended.add_metric([outcome.lower()], n)
                times = runtime.dispatcher.run_times
                buckets = [("+Inf" if b == float("inf") else str(b), n) for b, n in zip(RUN_TIME_BUCKETS, times.counts)]
                run_time.add_metric([], buckets, times.total)
        yield from (depth, workers, up, claimed, started, ended, run_time)


class MetricsServer:
    def __init__(self, port: int, current: Callable[[], Queuer | None]) -> None:
        self.port = port
        self.current = current
        self._server: Any = None

    def start(self) -> None:
        try:
            from prometheus_client import CollectorRegistry, start_http_server
        except ImportError:
            raise SystemExit("--metrics-port needs prometheus-client: pip install 'queuer[metrics]'") from None
        registry = CollectorRegistry()
        registry.register(QueuerCollector(self.current))
        self._server, _thread = start_http_server(self.port, registry=registry)
        log.info("metrics on http://0.0.0.0:%d/metrics", self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
