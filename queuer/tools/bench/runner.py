"""``run_bench``: the server to measure on, which measurements run and in what order, the JSON written."""

from __future__ import annotations

import json
import os
import sys
from contextlib import ExitStack
from dataclasses import asdict
from typing import TextIO

from queuer.config.database import DatabaseConfiguration
from queuer.tools.bench import aging, cpu, groups, throughput, web_pages, workflows
from queuer.tools.bench.harness import BenchSettings, Harness, Report

# The server settings of a durable PostgreSQL (its defaults), and of a fast one.
# The durable server: PostgreSQL's own defaults, over the throwaway server's fast ones (FAST_SETTINGS
# of postgres_server, which --fast keeps).
DURABLE_SETTINGS = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}

MEASUREMENTS = ("ceiling", "drain", "work", "latency", "processes", "enqueue", "scale", "web", "workflow", "groups",
                "cpu", "aging", "soak")
# Measurements that take long or need much disk: run only when asked for with --only.
ON_REQUEST = ("aging", "soak")


def measure(bench: Harness, which: set[str]) -> Report:
    """Run the measurements in ``which``, in the order of MEASUREMENTS, printing each figure as it comes."""
    report = Report(asdict(bench.settings), bench.base.describe())
    kind = "fast: fsync off" if bench.settings.fast else "durable: fsync on, synchronous commit"
    print(f"queuer bench on {bench.base.describe()} ({kind}); {os.cpu_count()} cores", file=bench.out, flush=True)
    ceiling = throughput.ceiling(bench, report) if "ceiling" in which else None
    drain_rate = 0.0
    # latency and scale are put beside the default drain's rate, so they need it measured.
    if which & {"drain", "latency", "scale"}:
        drain_rate = throughput.drain(bench, report, ceiling)
    if "work" in which:
        throughput.work(bench, report)
    if "latency" in which:
        throughput.latency(bench, report, drain_rate)
    if "processes" in which:
        throughput.processes(bench, report)
    if "enqueue" in which:
        throughput.enqueue(bench, report)
    if "scale" in which:
        throughput.scale(bench, report, drain_rate)
    if "web" in which:
        web_pages.web(bench, report)
    if "workflow" in which:
        workflows.workflows(bench, report)
    if "groups" in which:
        groups.groups(bench, report)
    if "cpu" in which:
        cpu.cpu(bench, report)
    if "aging" in which:
        aging.aging(bench, report)
    if "soak" in which:
        aging.soak(bench, report)
    return report


def run_bench(settings: BenchSettings, which: set[str], json_path: str | None, out: TextIO = sys.stdout) -> int:
    with ExitStack() as stack:
        if DatabaseConfiguration.is_configured():
            config = DatabaseConfiguration.from_env()
        else:
            from queuer.tools.postgres_server import TemporaryPostgres

            server_settings = {} if settings.fast else DURABLE_SETTINGS
            print(f"No QUEUER_DB_* set: starting a throwaway PostgreSQL ({'fast' if settings.fast else 'durable'}) ...",
                  file=out, flush=True)
            config = stack.enter_context(TemporaryPostgres(extra_settings=server_settings)).start()
        report = measure(Harness(config, settings, out), which)
    if json_path:
        with open(json_path, "w", encoding="utf-8") as f:
            json.dump(asdict(report), f, indent=2)
        print(f"figures written to {json_path}", file=out)
    return 0
