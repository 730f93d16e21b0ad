"""Live views: ``dashboard`` (a frame redrawn in place that fits in 80 columns) and ``listen``."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

import click

from queuer.cli.base import CliState, main, pass_state

if TYPE_CHECKING:
    import psycopg

    from queuer.database.inspect import Snapshot

WIDTH = 80


def render(snap: Snapshot) -> str:
    lines = [
        f"queuer dashboard · schema {snap.schema} · {time.strftime('%H:%M:%S')}"[:WIDTH],
        f"throughput {snap.jobs_per_second:,.1f} jobs/s (last minute) · failed last hour {snap.failed_1h}"[:WIDTH],
        "",
        f"{'task':<27}{'queued':>9}{'sched':>8}{'running':>9}{'waiting':>9}{'done/1m':>9}{'fail/1m':>9}",
    ]
    for t in snap.tasks:
        lines.append(f"{t.task[:26]:<27}{t.queued:>9}{t.scheduled:>8}{t.running:>9}{t.waiting:>9}{t.succeeded_1m:>9}"
                     f"{t.failed_1m:>9}")
    if not snap.tasks:
        lines.append("(no jobs)")
    lines += ["", f"{'worker':<30}{'status':<10}{'running':>9}{'heartbeat':>12}"]
    for w in snap.workers:
        lines.append(f"{w.name[:29]:<30}{w.status:<10}{w.running:>9}{w.heartbeat_age:>11.1f}s")
    if not snap.workers:
        lines.append("(no workers)")
    return "\n".join(line[:WIDTH] for line in lines)


def run_dashboard(conn: psycopg.Connection[Any], schema: str, interval: float, once: bool,
                  out: TextIO | None = None) -> None:
    """Print frames until Ctrl-C (one with ``once``); ``out`` defaults to the stdout of the moment."""
    from queuer.database.inspect import take_snapshot

    out = out or sys.stdout
    try:
        while True:
            frame = render(take_snapshot(conn, schema))
            if once:
                print(frame, file=out)
                return
            # Home the cursor and clear: the view is redrawn in place.
            print("\x1b[H\x1b[2J" + frame + "\n\n(Ctrl-C to quit)", file=out, flush=True)
            time.sleep(interval)
    except KeyboardInterrupt:
        print(file=out)


@main.command()
@click.option("--interval", default=1.0, show_default=True, help="Seconds between refreshes.")
@click.option("--once", is_flag=True, help="Print one frame and exit.")
@pass_state
def dashboard(state: CliState, interval: float, once: bool) -> None:
    """A live view: jobs per task and status, throughput, failures, workers."""
    from queuer.database.migrations import installed_version

    with state.connection() as conn:
        if installed_version(conn, state.config().schema) == 0:
            raise click.ClickException(f"queuer is not installed in schema {state.config().schema}: "
                                       "run `queuer install`")
        run_dashboard(conn, state.config().schema, interval, once)


@main.command()
@pass_state
def listen(state: CliState) -> None:
    """Print queuer's NOTIFY events as they arrive (Ctrl-C to stop)."""
    from queuer.database.inspect import listen as listen_on

    with state.connection() as conn:
        channel = listen_on(conn, state.config().schema)
        click.echo(f"listening on {channel} (Ctrl-C to stop)", err=True)
        try:
            for notify in conn.notifies():
                click.echo(notify.payload)
        except KeyboardInterrupt:
            pass
