"""The ``queuer`` command (click)."""

from __future__ import annotations

import click


@click.group()
@click.version_option(package_name="queuer")
def main() -> None:
    """queuer: a PostgreSQL job queue. Reads QUEUER_DB_* / QUEUER_DB_URL."""


@main.command()
@click.option("--jobs", default=10_000, show_default=True, help="How many jobs the demo adds.")
@click.option("--concurrency", default=8, show_default=True, help="Worker threads.")
def demo(jobs: int, concurrency: int) -> None:
    """Run a worker on a demo workload (an embedded PostgreSQL when QUEUER_DB_* is unset)."""
    from queuer.demo import run_demo

    raise SystemExit(run_demo(jobs, concurrency))


@main.command()
@click.option("--jobs", default=100_000, show_default=True, help="Jobs per drain measurement.")
@click.option("--concurrency", default=10, show_default=True, help="Threads per worker process.")
@click.option("--prefetch", default=100, show_default=True, help="Jobs claimed beyond free threads.")
@click.option("--processes", default=4, show_default=True, help="Worker processes for the multi-process drain.")
@click.option("--scale-rows", default=1_000_000, show_default=True, help="Queued and archived rows for the scale test.")
@click.option("--only", multiple=True, type=click.Choice(["enqueue", "drain", "processes", "latency", "scale"]),
              help="Run only these measurements (repeatable).")
@click.option("--json", "json_path", default="bench-results.json", show_default=True, help="Where to write the figures.")
def bench(jobs: int, concurrency: int, prefetch: int, processes: int, scale_rows: int,
          only: tuple[str, ...], json_path: str) -> None:
    """Measure enqueue and drain rates, latency and behaviour at scale; print a table, write JSON."""
    from queuer.bench import BenchSettings, run_bench

    which = set(only) or {"enqueue", "drain", "processes", "latency", "scale"}
    settings = BenchSettings(jobs=jobs, concurrency=concurrency, prefetch=prefetch, processes=processes,
                             scale_rows=scale_rows)
    raise SystemExit(run_bench(settings, which, json_path))
