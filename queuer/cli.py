"""The ``queuer`` command (also ``python -m queuer``).

Reads the same QUEUER_DB_* / QUEUER_DB_URL settings as the library; ``--schema``
overrides the schema. Every failure is a message and a non-zero exit, never a
traceback.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass, replace
from datetime import datetime, timedelta
from enum import Enum
from typing import Any
from uuid import UUID

import click
import psycopg
from psycopg.rows import dict_row

from queuer.config.database import DatabaseConfiguration
from queuer.database.connect import first_line
from queuer.errors import ConfigurationError, QueuerError
from queuer.payload.serialization import MAX_NESTING

DURABILITY = click.Choice(["volatile", "balanced", "durable"])


class CliState:
    def __init__(self, schema: str | None) -> None:
        self.schema = schema

    def config(self) -> DatabaseConfiguration:
        try:
            config = DatabaseConfiguration.from_env()
            return config.with_schema(self.schema) if self.schema else config
        except ConfigurationError as exc:
            raise click.ClickException(str(exc)) from None

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        from queuer.database.connection import connect

        config = self.config()
        try:
            conn = connect(config, application_name="queuer:cli")
        except QueuerError as exc:
            raise click.ClickException(str(exc)) from None
        with conn:
            yield conn

    def queuer(self) -> Any:
        from queuer.client.factory import new_queuer_with_db
        from queuer.config.settings import WorkerSettings

        config = self.config()
        if not os.environ.get("QUEUER_DB_STARTUP_WAIT"):
            config = replace(config, startup_wait=config.timeout)  # an operator wants an answer soon
        try:
            key = os.environ.get("QUEUER_ENCRYPTION_KEY") or None
            # Commands read and add jobs; none of them creates or alters the schema or a worker row.
            return new_queuer_with_db("queuer-cli", 1, key, config, settings=WorkerSettings(),
                                      install=False, register=False)
        except click.ClickException:
            raise
        except Exception as exc:  # unreachable database, bad settings: one clear line
            raise click.ClickException(str(exc)) from None


pass_state = click.make_pass_decorator(CliState)


# Characters that act on the operator's terminal: C0 and C1 controls, DEL, bidi marks, overrides, isolates.
_UNSAFE_FOR_TERMINAL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def shown(value: object) -> str:
    """``value`` as text that cannot retitle, recolour or reorder the operator's terminal."""
    return _UNSAFE_FOR_TERMINAL.sub(
        lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}", str(value))


class _Commands(click.Group):
    """Every failure is one line and a non-zero exit; QUEUER_DEBUG=1 shows the traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            if os.environ.get("QUEUER_DEBUG"):
                raise
            raise click.ClickException(_one_line(exc)) from None


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, psycopg.Error):
        return f"PostgreSQL refused: {shown(first_line(exc))}"
    if isinstance(exc, RecursionError):
        return "a value nests too deeply to handle"
    if isinstance(exc, QueuerError) or isinstance(exc, (ValueError, TypeError, LookupError, OverflowError)):
        text = exc.args[0] if len(exc.args) == 1 and isinstance(exc.args[0], str) else str(exc)
        return shown(text)
    return f"{type(exc).__name__}: {shown(exc)} (QUEUER_DEBUG=1 shows where)"


@click.group(cls=_Commands)
@click.version_option(package_name="queuer")
@click.option("--schema", default=None, help="Schema to use instead of QUEUER_DB_SCHEMA.")
@click.pass_context
def main(ctx: click.Context, schema: str | None) -> None:
    """queuer: a PostgreSQL job queue. Reads QUEUER_DB_* (or QUEUER_DB_URL)."""
    ctx.obj = CliState(schema)


# -- schema -----------------------------------------------------------------------


@main.command()
@click.option("--durability", type=DURABILITY, default="durable", show_default=True,
              help="volatile: all tables unlogged; balanced: only the archive; durable: none.")
@pass_state
def install(state: CliState, durability: str) -> None:
    """Create queuer's tables in the schema (or upgrade them)."""
    from queuer.database import admin
    from queuer.database.migrations import migrate

    with state.connection() as conn:
        applied = migrate(conn, state.config().schema)
        admin.apply(conn, admin.durability_statements(conn, state.config().schema, durability))
    click.echo(f"installed schema {state.config().schema}: migrations {applied or 'already applied'}, "
               f"durability {durability}")


@main.command()
@click.option("--durability", type=DURABILITY, default=None, help="Also switch to this durability level.")
@pass_state
def upgrade(state: CliState, durability: str | None) -> None:
    """Apply pending migrations."""
    from queuer.database import admin
    from queuer.database.migrations import installed_version, migrate

    with state.connection() as conn:
        before = installed_version(conn, state.config().schema)
        applied = migrate(conn, state.config().schema)
        if durability:
            admin.apply(conn, admin.durability_statements(conn, state.config().schema, durability))
    click.echo(f"schema {state.config().schema} at version {before}; applied {applied or 'nothing'}")


@main.command()
@click.confirmation_option(prompt="Drop queuer's tables and every job in them?")
@pass_state
def uninstall(state: CliState) -> None:
    """Drop queuer's tables (the schema itself stays)."""
    from queuer.database.migrations import uninstall as drop

    with state.connection() as conn:
        drop(conn, state.config().schema)
    click.echo(f"uninstalled queuer from schema {state.config().schema}")


@main.command()
@click.option("--expect", type=click.Choice(["present", "absent"]), default="present", show_default=True)
@pass_state
def verify(state: CliState, expect: str) -> None:
    """Check that queuer's tables and indexes exist (or not); exit 1 on any mismatch."""
    from queuer.database import admin

    with state.connection() as conn:
        problems = admin.verify(conn, state.config().schema, expect == "present")
    for line in problems:
        click.echo(line)
    if problems:
        raise SystemExit(1)
    click.echo(f"all queuer objects {expect} in schema {state.config().schema}")


@main.command()
@click.argument("mode", type=DURABILITY)
@click.option("--dry-run", is_flag=True, help="Print the SQL without running it.")
@pass_state
def durability(state: CliState, mode: str, dry_run: bool) -> None:
    """Switch tables between logged and unlogged without losing rows."""
    from queuer.database import admin

    with state.connection() as conn:
        statements = admin.durability_statements(conn, state.config().schema, mode)
        for statement in statements:
            click.echo(statement + ";")
        if not dry_run:
            admin.apply(conn, statements)
    click.echo(f"{'would switch' if dry_run else 'switched'} to {mode} ({len(statements)} table(s) changed)")


@main.command()
@click.option("--dry-run", is_flag=True, help="Print the SQL without running it.")
@click.option("--rollback", is_flag=True, help="Reset to the server's defaults.")
@pass_state
def autovac(state: CliState, dry_run: bool, rollback: bool) -> None:
    """Apply autovacuum settings suited to queue tables (or reset them)."""
    from queuer.database import admin

    with state.connection() as conn:
        statements = admin.autovacuum_statements(state.config().schema, rollback, conn)
    _echo_and_apply(state, statements, dry_run)


def _echo_and_apply(state: CliState, statements: list[str], dry_run: bool) -> None:
    """Print the SQL; run it in one transaction unless this is a dry run."""
    from queuer.database import admin

    for statement in statements:
        click.echo(statement + ";")
    if not dry_run:
        with state.connection() as conn:
            admin.apply(conn, statements)


@main.command()
@click.argument("role")
@click.option("--dry-run", is_flag=True, help="Print the SQL without running it.")
@pass_state
def grant(state: CliState, role: str, dry_run: bool) -> None:
    """Let ROLE produce and consume jobs without DDL rights (run as the schema's owner)."""
    from queuer.database import admin

    try:
        statements = admin.grant_statements(state.config().schema, role)
    except ValueError as exc:
        raise click.BadParameter(str(exc).replace("schema name", "role name"), param_hint="ROLE") from None
    _echo_and_apply(state, statements, dry_run)


@main.command()
def keygen() -> None:
    """Print a new random encryption key for QUEUER_ENCRYPTION_KEY."""
    from queuer.payload.encryption import generate_key

    click.echo(generate_key())


@main.command()
@click.option("--batch-size", default=500, show_default=True)
@pass_state
def reencrypt(state: CliState, batch_size: int) -> None:
    """After a key rotation: re-encrypt every job under the newest key of QUEUER_ENCRYPTION_KEY."""
    from queuer.database import admin
    from queuer.errors import EncryptionError
    from queuer.payload.encryption import Keyring

    try:
        keyring = Keyring.parse(os.environ.get("QUEUER_ENCRYPTION_KEY"))
    except EncryptionError as exc:
        raise click.ClickException(str(exc)) from None
    if keyring is None:
        raise click.ClickException("set QUEUER_ENCRYPTION_KEY: the newest key first, then the old ones")
    with state.connection() as conn:
        try:
            total = admin.reencrypt(conn, state.config().schema, keyring, batch_size,
                                    progress=lambda n: click.echo(f"\rre-encrypted {n}", nl=False, err=True))
        except EncryptionError as exc:
            raise click.ClickException(f"{exc}; nothing after this row was changed") from None
    click.echo(f"\nre-encrypted {total} job(s) under key {keyring.current_id.hex()}")


# -- jobs -------------------------------------------------------------------------


def _strict_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range for a JSON number")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (JSON has no NaN or Infinity)")


def _json_arg(text: str | None, what: str, kind: type) -> Any:
    if text is None:
        return kind()
    try:
        value = json.loads(text, parse_float=_strict_float, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON ({exc.msg} at position {exc.pos})", param_hint=what) from None
    except RecursionError:
        raise click.BadParameter(f"nests more than {MAX_NESTING} levels deep", param_hint=what) from None
    except ValueError as exc:  # NaN, Infinity, 1e999, an integer of thousands of digits
        raise click.BadParameter(shown(exc), param_hint=what) from None
    if not isinstance(value, kind):
        raise click.BadParameter(f"must be a JSON {'array' if kind is list else 'object'}", param_hint=what)
    return value


@main.command()
@click.argument("task")
@click.argument("args", required=False)
@click.option("--kwargs", default=None, help="Keyword arguments as a JSON object.")
@click.option("--priority", default=0, show_default=True, type=click.IntRange(-(2**31), 2**31 - 1))
@click.option("--after", default=None, type=float, callback=lambda ctx, param, value: _delay(value),
              help="Seconds to wait before the job may start (at most 10 years).")
@click.option("--force", is_flag=True, help="Queue even if no worker has ever registered TASK.")
@pass_state
def queue(state: CliState, task: str, args: str | None, kwargs: str | None, priority: int, after: float | None,
          force: bool) -> None:
    """Add a job of TASK. ARGS is a JSON array of positional arguments or a JSON object of
    keyword arguments: queuer queue resize '["/a.png"]', queuer queue resize '{"path": "/a.png"}'."""
    from queuer.client.registry import validate_task_name
    from queuer.model.options import Options

    try:
        validate_task_name(task, "TASK")
    except ValueError as exc:
        raise click.BadParameter(shown(exc), param_hint="TASK") from None
    parameters_keyed = _json_arg(kwargs, "--kwargs", dict)
    if args is not None and args.lstrip().startswith("{"):
        if kwargs is not None:
            raise click.BadParameter("give keyword arguments either as ARGS or with --kwargs, not both",
                                     param_hint="ARGS")
        parameters, parameters_keyed = [], _json_arg(args, "ARGS", dict)
    else:
        parameters = _json_arg(args, "ARGS", list)
    options = Options(priority=priority, execute_after=timedelta(seconds=after) if after else None)
    with state.queuer() as q:
        if not force and not q.worker_db.task_known(task):
            raise click.ClickException(
                f"unknown task {task!r}: no worker has registered it (check the name, or pass --force)")
        job = q.add_job_with_options(options, task, *parameters, **parameters_keyed)
    click.echo(f"{job.rid} {job.status.value} {shown(job.task_name)}")


MAX_DELAY_SECONDS = 10 * 365 * 86400.0


def _delay(value: float | None) -> float | None:
    if value is not None and not 0 <= value <= MAX_DELAY_SECONDS:
        raise click.BadParameter(f"must be a number of seconds from 0 to {MAX_DELAY_SECONDS:.0f} (10 years), "
                                 f"not {value}", param_hint="--after")
    return value


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (UUID, datetime)):
        return str(value)
    return value


def _table(rows: list[list[str]], headers: list[str]) -> None:
    rows = [[shown(cell) for cell in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)))


@main.command()
@click.option("--status", default=None, help="QUEUED, SCHEDULED, RUNNING, SUCCEEDED, FAILED or CANCELLED.")
@click.option("--task", "task_name", default=None)
@click.option("--worker", "worker_rid", default=None, help="Only jobs held by this worker rid.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")
@pass_state
def jobs(state: CliState, status: str | None, task_name: str | None, worker_rid: str | None, limit: int,
         as_json: bool) -> None:
    """List jobs (active ones, or ended ones with an ended --status)."""
    with state.queuer() as q:
        try:
            if worker_rid:
                found = q.get_jobs_by_worker_rid(worker_rid, limit=limit)
            else:
                found = q.get_jobs(status, task_name=task_name, limit=limit)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    if as_json:
        for job in found:
            click.echo(json.dumps(_plain(job)))
        return
    _table([[str(j.rid), j.status.value, j.task_name[:24], str(j.attempts), str(j.priority),
             j.scheduled_at.strftime("%H:%M:%S") if j.scheduled_at else ""] for j in found],
           ["rid", "status", "task", "att", "prio", "due"])


@main.command()
@click.argument("rid")
@pass_state
def job(state: CliState, rid: str) -> None:
    """Show one job as JSON."""
    from queuer.errors import JobNotFoundError

    with state.queuer() as q:
        try:
            found = q.get_job(rid)
        except (JobNotFoundError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(_plain(found), indent=2))


def _each_rid(state: CliState, rids: tuple[str, ...], action: Callable[[Any, str], str]) -> None:
    """Apply ``action`` to every rid; report each failure and exit 1 if any failed."""
    from queuer.errors import EncryptionError, QueuerError

    failed = 0
    with state.queuer() as q:
        for rid in rids:
            try:
                click.echo(shown(action(q, rid)))
            except (QueuerError, EncryptionError, ValueError) as exc:
                failed += 1
                click.echo(f"{shown(rid)}: {_one_line(exc)}", err=True)
    if failed:
        raise SystemExit(1)


@main.command()
@click.argument("rids", nargs=-1, required=True)
@pass_state
def cancel(state: CliState, rids: tuple[str, ...]) -> None:
    """Cancel queued, scheduled or running jobs."""
    _each_rid(state, rids, lambda q, rid: f"{rid} {q.cancel_job(rid).status.value}")


@main.command()
@click.argument("rids", nargs=-1, required=True)
@pass_state
def retry(state: CliState, rids: tuple[str, ...]) -> None:
    """Add ended jobs again (as new jobs with the same task and arguments)."""

    def readd(q: Any, rid: str) -> str:
        again = q.readd_job_from_archive(rid)
        return f"{rid} -> {again.rid} {again.status.value}"

    _each_rid(state, rids, readd)


@main.command()
@click.option("--json", "as_json", is_flag=True)
@pass_state
def workers(state: CliState, as_json: bool) -> None:
    """List workers with their heartbeat age."""
    with state.queuer() as q:
        found = q.get_workers(limit=1000)
        now = q.db.execute_one("SELECT now() AS now")["now"]
    if as_json:
        for w in found:
            click.echo(json.dumps(_plain(w)))
        return
    _table([[str(w.rid), w.name[:20], w.status.value, f"{w.host}:{w.pid}"[:24], str(w.max_concurrency),
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

    from queuer.database.statements import Queries
    from queuer.database.worker_db import liveness_lock_space

    config = state.config()
    host = host or socket.gethostname()
    with state.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        try:
            rows = cur.execute(Queries(config.schema).worker_health, {
                "host": host, "name": name, "lock_space": liveness_lock_space(config.schema)}).fetchall()
        except psycopg.errors.UndefinedTable:
            raise click.ClickException(
                f"queuer is not installed in schema {config.schema}: run `queuer install`") from None
    who = f"host {host}" + (f", name {name}" if name else "")
    for row in rows:
        alive = row["locked"] or row["silent_seconds"] <= max_silence
        if row["status"] in ("RUNNING", "STOPPING") and alive:
            click.echo(f"ok: worker {shown(row['name'])} ({row['rid']}, pid {row['pid']}) is {row['status']}, "
                       f"{'session held' if row['locked'] else 'heartbeating'}")
            return
    if not rows:
        raise click.ClickException(f"unhealthy: no worker of {who} is registered in schema {config.schema}")
    newest = rows[0]
    if newest["status"] in ("RUNNING", "STOPPING"):
        reason = f"its session is gone and it has not heartbeated for {newest['silent_seconds']:.0f} s"
    else:
        reason = f"it is {newest['status']}"
    raise click.ClickException(f"unhealthy: worker {shown(newest['name'])} ({newest['rid']}) of {shown(who)}: {reason}")


@main.command()
@click.argument("action", type=click.Choice(["list", "pause", "resume", "remove"]), default="list")
@click.argument("name", required=False)
@pass_state
def schedules(state: CliState, action: str, name: str | None) -> None:
    """List cron schedules, or pause / resume / remove one by NAME."""
    with state.queuer() as q:
        if action == "list":
            _table([[s.name, s.cron, s.timezone, s.task_name, "paused" if s.paused else "active",
                     s.next_run_at.strftime("%Y-%m-%d %H:%M:%S") if s.next_run_at else ""]
                    for s in q.get_schedules()],
                   ["name", "cron", "tz", "task", "state", "next run"])
            return
        if not name:
            raise click.UsageError(f"'schedules {action}' needs a schedule NAME")
        try:
            {"pause": q.pause_schedule, "resume": q.resume_schedule, "remove": q.remove_schedule}[action](name)
        except LookupError as exc:
            raise click.ClickException(_one_line(exc)) from None
    click.echo(f"schedule {shown(name)}: {action}d")


#: the partitions made ahead, if any are missing, are a day each (WorkerSettings.archive_partition)
PRUNE_PARTITION_SECONDS = 86400.0
#: pruning more archived jobs than this (or all of them) asks for --yes
PRUNE_CONFIRM_ABOVE = 10_000
MAX_AGE_SECONDS = 100 * 365 * 86400.0
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@main.command()
@click.option("--older-than", required=True, help="Age with a unit: 30d, 12h, 45m or 90s (at least 1s).")
@click.option("--batch-size", default=5000, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
@click.option("--yes", is_flag=True,
              help=f"Delete without asking when that is more than {PRUNE_CONFIRM_ABOVE:,} jobs or the whole archive.")
@pass_state
def prune(state: CliState, older_than: str, batch_size: int, dry_run: bool, yes: bool) -> None:
    """Delete archived jobs that ended longer ago than --older-than, in small batches."""
    from queuer.database import admin

    seconds = parse_age(older_than)
    schema = state.config().schema
    with state.connection() as conn:
        doomed, total = _archive_counts(conn, schema, seconds)
        what = f"{doomed:,} of {total:,} archived job(s) (those that ended more than {older_than.strip()} ago)"
        if dry_run:
            click.echo(f"would prune {what}")
            return
        if doomed and not yes and (doomed > PRUNE_CONFIRM_ABOVE or doomed == total):
            why = "the whole archive" if doomed == total else f"more than {PRUNE_CONFIRM_ABOVE:,} jobs"
            if not sys.stdin.isatty():
                raise click.ClickException(
                    f"this would delete {what}: {why}. Check with --dry-run, then run again with --yes")
            click.confirm(f"delete {what} ({why})?", abort=True)
        _, dropped = admin.maintain_archive(conn, schema, PRUNE_PARTITION_SECONDS, keep_seconds=seconds)
        admin.prune_archive(conn, schema, seconds, batch_size,
                            progress=lambda n: click.echo(f"\rdeleted {n:,} row by row", nl=False, err=True))
    whole = f" ({dropped} whole partition(s) dropped)" if dropped else ""
    click.echo(f"\npruned {doomed:,} archived job(s) older than {older_than.strip()}{whole}")


def _archive_counts(conn: psycopg.Connection[Any], schema: str, older_than_seconds: float) -> tuple[int, int]:
    """(jobs that ended longer ago than this, all archived jobs); a clear line when there is no archive."""
    from queuer.database.admin import count_archive

    try:
        return count_archive(conn, schema, older_than_seconds)
    except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
        raise click.ClickException(
            f"queuer is not installed in schema {schema}: check --schema (or QUEUER_DB_SCHEMA), "
            "or run `queuer install`") from None


def parse_age(text: str) -> float:
    """Seconds in an age like 30d, 12h, 45m or 90s; BadParameter for a slip (no unit, 0, negative, huge)."""
    match = _AGE.match(text)
    if not match:
        raise click.BadParameter(
            f"{shown(repr(text))} is not an age with a unit like 30d, 12h, 45m or 90s", param_hint="--older-than")
    seconds = float(match.group(1)) * _AGE_UNITS[match.group(2)]
    if seconds < 1:
        raise click.BadParameter("an age under one second would prune every archived job: give a real age "
                                 "like 30d", param_hint="--older-than")
    if seconds > MAX_AGE_SECONDS:
        raise click.BadParameter("give an age of at most 100 years", param_hint="--older-than")
    return seconds


@main.command()
@pass_state
def listen(state: CliState) -> None:
    """Print queuer's NOTIFY events as they arrive (Ctrl-C to stop)."""
    from queuer.database.connection import channel_name

    with state.connection() as conn:
        channel = channel_name(state.config().schema)
        conn.execute(f'LISTEN "{channel}"')
        click.echo(f"listening on {channel} (Ctrl-C to stop)", err=True)
        try:
            for notify in conn.notifies():
                click.echo(notify.payload)
        except KeyboardInterrupt:
            pass


@main.command()
@click.option("--interval", default=1.0, show_default=True, help="Seconds between refreshes.")
@click.option("--once", is_flag=True, help="Print one frame and exit.")
@pass_state
def dashboard(state: CliState, interval: float, once: bool) -> None:
    """A live view: jobs per task and status, throughput, failures, workers."""
    from queuer.dashboard import run_dashboard
    from queuer.database.migrations import installed_version

    with state.connection() as conn:
        if installed_version(conn, state.config().schema) == 0:
            raise click.ClickException(f"queuer is not installed in schema {state.config().schema}: "
                                       "run `queuer install`")
        run_dashboard(conn, state.config().schema, interval, once)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but loopback needs QUEUER_WEB_TOKEN.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option("--read-only", is_flag=True, help="Pages only: no cancel, re-queue, stop or schedule buttons.")
@click.option("--show-encrypted", is_flag=True,
              help="Show encrypted arguments and results decrypted (needs QUEUER_ENCRYPTION_KEY).")
@click.option("--trusted-proxy", "trusted_proxies", multiple=True, metavar="ADDRESS",
              help="A reverse proxy (address or network) whose X-Forwarded-For/-Proto/-Host are believed; "
                   "repeatable (default: QUEUER_WEB_TRUSTED_PROXIES, comma-separated).")
@click.option("--public-origin", default=None, metavar="URL",
              help="The origin browsers use behind a proxy, e.g. https://queue.example.com "
                   "(default: QUEUER_WEB_PUBLIC_ORIGIN).")
@click.option("--revoke-sessions", is_flag=True,
              help="End every web session of this schema on every server (bump the sessions epoch), then exit.")
@pass_state
def web(state: CliState, host: str, port: int, read_only: bool, show_encrypted: bool,
        trusted_proxies: tuple[str, ...], public_origin: str | None, revoke_sessions: bool) -> None:
    """Serve the web UI (pip install 'queuer[web]'); QUEUER_WEB_TOKEN guards it."""
    from queuer.web import MISSING_EXTRA, extra_installed

    if not extra_installed():
        raise click.ClickException(MISSING_EXTRA)
    from queuer.web.security import TokenError
    from queuer.web.server import WebServerError, check_bind, serve, settings_from_env, web_queuer

    if revoke_sessions:
        import socket

        from queuer.web.server import revoke_sessions as revoke

        with state.queuer() as q:
            epoch = revoke(q, f"queuer web --revoke-sessions on {socket.gethostname()}")
        click.echo(f"ended every web session of schema {state.config().schema} (sessions epoch {epoch})")
        return
    try:
        settings = settings_from_env(read_only, show_encrypted, trusted_proxies, public_origin)
        check_bind(host, settings.token or settings.read_token)
    except (TokenError, WebServerError) as exc:
        raise click.ClickException(str(exc)) from None
    if show_encrypted and not os.environ.get("QUEUER_ENCRYPTION_KEY"):
        raise click.ClickException("--show-encrypted needs the key: set QUEUER_ENCRYPTION_KEY")
    config = state.config()
    if not os.environ.get("QUEUER_DB_STARTUP_WAIT"):
        config = replace(config, startup_wait=config.timeout)
    try:
        q = web_queuer(config, os.environ.get("QUEUER_ENCRYPTION_KEY") or None)
    except Exception as exc:  # unreachable database, schema not installed: one clear line
        raise click.ClickException(str(exc)) from None
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"queuer web on http://{shown}:{port} (schema {config.schema}"
               f"{', read-only' if read_only else ''}{', token required' if settings.token or settings.read_token else ''}"
               f"{', behind ' + ', '.join(settings.trusted_proxies) if settings.trusted_proxies else ''}); "
               "Ctrl-C stops it", err=True)
    with q:
        serve(q, settings, host, port)


@main.command()
@click.argument("factory")
@click.option("--max-concurrency", type=int, default=None, help="Override the factory's thread count.")
@click.option("--mode", type=click.Choice(["continuous", "drain"]), default="continuous", show_default=True)
@click.option("--restart-on-failure", is_flag=True, help="Call the factory again after a failure.")
@click.option("--restart-delay", default=5.0, show_default=True, help="Seconds before a restart.")
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
@click.option("--shutdown-on-listener-failure", is_flag=True,
              help="Stop when the LISTEN connection stays down (instead of polling on).")
@click.option("--metrics-port", type=int, default=None, help="Serve Prometheus metrics on this port.")
@click.option("--app-dir", default=".", show_default=True,
              help="Directory put first on sys.path, where FACTORY's module is looked up.")
def run(factory: str, max_concurrency: int | None, mode: str, restart_on_failure: bool, restart_delay: float,
        log_level: str, shutdown_on_listener_failure: bool, metrics_port: int | None, app_dir: str) -> None:
    """Run workers from FACTORY (module:function or module.function) until SIGTERM/SIGINT."""
    from queuer.supervisor.runner import Supervisor, SupervisorOptions

    # As celery, gunicorn and uvicorn do: the app's own directory first.
    sys.path.insert(0, os.path.abspath(app_dir))
    options = SupervisorOptions(
        max_concurrency=max_concurrency, mode=mode, restart_on_failure=restart_on_failure,
        restart_delay=restart_delay, log_level=log_level.upper(),
        shutdown_on_listener_failure=shutdown_on_listener_failure, metrics_port=metrics_port,
    )
    raise SystemExit(Supervisor(factory, options).run())


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
                                                          "enqueue", "scale", "web", "aging", "soak"]),
              help="Run only these measurements (repeatable); --only ceiling measures the SQL-only ceiling; "
                   "--only web times the web UI's pages over --scale-rows archived jobs; --only aging (not run "
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


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
