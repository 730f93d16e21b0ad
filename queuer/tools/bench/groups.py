"""Groups: the drain of jobs claimed round-robin between keys, beside the same drain without groups."""

from __future__ import annotations

import time

from queuer.model.batch_job import BatchJob
from queuer.model.options import Options
from queuer.tools.bench.harness import Harness, Report
from queuer.tools.bench.tasks import noop

KEYS = 10


def groups(bench: Harness, report: Report) -> None:
    plain = _drain(bench, grouped=False)
    grouped = _drain(bench, grouped=True)
    report.add("drain without groups", plain, "jobs/s", f"{bench.settings.jobs:,} noop jobs, 1 process", out=bench.out)
    report.add(f"drain with {KEYS} groups", grouped, "jobs/s",
               f"group_concurrency_limit=1000, keys round-robin; {grouped / plain:.2f}x without groups", out=bench.out)


def _drain(bench: Harness, grouped: bool) -> float:
    s = bench.settings
    config = bench.fresh_config()
    with bench.queuer(config) as q:
        task = "noop"
        if grouped:
            task = q.add_task_with_name(noop, "noop_grouped", group_concurrency_limit=1000).name
        for start in range(0, s.jobs, 20_000):
            q.add_jobs([BatchJob(task=task, options=Options(group_key=f"tenant-{i % KEYS}") if grouped else None)
                        for i in range(start, min(s.jobs, start + 20_000))])
        started = time.perf_counter()
        q.start()
        bench.wait_ended(q, s.jobs)
        return s.jobs / (time.perf_counter() - started)
