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
