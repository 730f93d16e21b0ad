"""Commands for trying queuer out and measuring it: dev-db, demo, bench."""

from __future__ import annotations

import time

import click

from queuer.cli.base import main


@main.command(name="dev-db")
def dev_db() -> None:
    """Start a throwaway PostgreSQL in the foreground for trying queuer; Ctrl-C removes it."""
    import signal as signals

    from queuer.tools.postgres_server import TemporaryPostgres

    server = TemporaryPostgres()
    click.echo("starting a throwaway PostgreSQL ...", err=True)
    config = server.start()
    try:
        click.echo(f"started {server.describe()}", err=True)
        click.echo("# paste this into another terminal:", err=True)
        click.echo(f"export QUEUER_DB_URL=postgresql://{config.username or 'postgres'}@{config.host}:{config.port}"
                   f"/{config.database or 'postgres'}")
        click.echo("(Ctrl-C stops it and deletes its files)", err=True)
        signals.signal(signals.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        click.echo("stopped and removed", err=True)


@main.command()
@click.option("--jobs", default=10_000, show_default=True, help="How many jobs the demo adds.")
@click.option("--concurrency", default=8, show_default=True, help="Worker threads.")
def demo(jobs: int, concurrency: int) -> None:
    """Run a worker on a demo workload (an embedded PostgreSQL when QUEUER_DB_* is unset)."""
    from queuer.tools.demo import run_demo

    raise SystemExit(run_demo(jobs, concurrency))


@main.command()
@click.option("--jobs", default=20_000, show_default=True, help="Jobs per drain measurement.")
@click.option("--concurrency", default=10, show_default=True, help="max_concurrency of the drain's queuer.")
@click.option("--fast", is_flag=True, help="A throwaway PostgreSQL with fsync off (default: durable).")
@click.option("--scale-rows", default=1_000_000, show_default=True, help="Queued and archived rows for the scale test.")
@click.option("--aging-jobs", default=400_000, show_default=True,
              help="Jobs per drain of the aging measurements (--only aging).")
@click.option("--archive-rows", default=10_000_000, show_default=True,
              help="Archived jobs beside the queue in the aging measurements, a million a day.")
@click.option("--soak-jobs", default=10_000_000, show_default=True,
              help="Jobs through one worker in the soak measurement (--only soak).")
@click.option("--only", multiple=True, type=click.Choice(["ceiling", "drain", "work", "latency", "processes",
                                                          "enqueue", "scale", "web", "workflow", "groups", "cpu",
                                                          "aging", "soak"]),
              help="Run only these measurements (repeatable); --only ceiling measures the SQL-only ceiling; "
                   "--only web times the web UI's pages over --scale-rows archived jobs; --only workflow times a "
                   "fan-in over 10,000 jobs against a plain drain of them, and a chain's links; --only groups drains "
                   "jobs of 10 group keys against the same drain without groups; --only cpu runs ~2 ms CPU-bound "
                   "jobs on 1 worker process and on one per core; --only aging (not run "
                   "by default) drains with a snapshot held open, beside a large archive, and times a prune; "
                   "--only soak (not run by default) runs --soak-jobs through one worker and samples rate, "
                   "memory and the job table's size.")
@click.option("--json", "json_path", default="bench-results.json", show_default=True, help="Where to write the figures.")
def bench(jobs: int, concurrency: int, fast: bool, scale_rows: int, aging_jobs: int, archive_rows: int,
          soak_jobs: int, only: tuple[str, ...], json_path: str) -> None:
    """What a user gets with no tuning: drain vs the SQL ceiling, real work, CPU, latency, processes, scale."""
    from queuer.tools.bench import MEASUREMENTS, ON_REQUEST, BenchSettings, run_bench

    which = set(only) or set(MEASUREMENTS) - set(ON_REQUEST)
    settings = BenchSettings(jobs=jobs, concurrency=concurrency, fast=fast, scale_rows=scale_rows,
                             aging_jobs=aging_jobs, archive_rows=archive_rows, soak_jobs=soak_jobs)
    raise SystemExit(run_bench(settings, which, json_path))
