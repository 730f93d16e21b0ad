"""Commands on workers: list them, and probe this host's for a container's health check."""

from __future__ import annotations

import json

import click
import psycopg

from queuer.cli.base import CliState, main, pass_state, plain, shown, table


@main.command()
@click.option("--json", "as_json", is_flag=True)
@pass_state
def workers(state: CliState, as_json: bool) -> None:
    """List workers with their heartbeat age."""
    from queuer.database.inspect import database_now

    with state.queuer() as q:
        found = q.get_workers(limit=1000)
        now = database_now(q.database)
    if as_json:
        for w in found:
            click.echo(json.dumps(plain(w)))
        return
    table([[str(w.rid), w.name[:20], w.status.value, f"{w.host}:{w.pid}"[:24], str(w.max_concurrency),
            f"{(now - w.heartbeat_at).total_seconds():.1f}s" if w.heartbeat_at else "-"] for w in found],
          ["rid", "name", "status", "host:pid", "conc", "heartbeat"])


@main.command()
@click.option("--name", default=None, help="Only the worker with this queuer name.")
@click.option("--host", default=None, help="The host whose workers to check (default: this one).")
@click.option("--max-silence", type=float, default=30.0, show_default=True,
              help="A worker without a session must have heartbeated this recently (seconds).")
@pass_state
def health(state: CliState, name: str | None, host: str | None, max_silence: float) -> None:
    """Exit 0 when a worker of this host is running and alive (a container or Kubernetes probe).

    Alive: its session lock is held (a busy worker is alive), or it heartbeated
    within --max-silence. Otherwise exit 1 and say why.
    """
    import socket

    from queuer.database.inspect import worker_health

    config = state.config()
    host = host or socket.gethostname()
    with state.connection() as conn:
        try:
            found = worker_health(conn, config.schema, host, name)
        except psycopg.errors.UndefinedTable:
            raise click.ClickException(
                f"queuer is not installed in schema {config.schema}: run `queuer install`") from None
    who = f"host {host}" + (f", name {name}" if name else "")
    for worker in found:
        alive = worker.locked or worker.silent_seconds <= max_silence
        if worker.status in ("RUNNING", "STOPPING") and alive:
            click.echo(f"ok: worker {shown(worker.name)} ({worker.rid}, pid {worker.pid}) is {worker.status}, "
                       f"{'session held' if worker.locked else 'heartbeating'}")
            return
    if not found:
        raise click.ClickException(f"unhealthy: no worker of {who} is registered in schema {config.schema}")
    newest = found[0]
    if newest.status in ("RUNNING", "STOPPING"):
        reason = f"its session is gone and it has not heartbeated for {newest.silent_seconds:.0f} s"
    else:
        reason = f"it is {newest.status}"
    raise click.ClickException(f"unhealthy: worker {shown(newest.name)} ({newest.rid}) of {shown(who)}: {reason}")
