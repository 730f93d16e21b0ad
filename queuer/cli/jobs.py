"""Commands on jobs and the schedules that add them: queue, jobs, job, cancel, retry, schedules."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import click

from queuer.cli.base import CliState, main, one_line, pass_state, plain, shown, table
from queuer.payload.serialization import MAX_NESTING

if TYPE_CHECKING:
    from queuer.client.queuer import Queuer

MAX_DELAY_SECONDS = 10 * 365 * 86400.0


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


def _delay(value: float | None) -> float | None:
    if value is not None and not 0 <= value <= MAX_DELAY_SECONDS:
        raise click.BadParameter(f"must be a number of seconds from 0 to {MAX_DELAY_SECONDS:.0f} (10 years), "
                                 f"not {value}", param_hint="--after")
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
    from queuer.database.inspect import task_known
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
        if not force and not task_known(q.database, task):
            raise click.ClickException(
                f"unknown task {task!r}: no worker has registered it (check the name, or pass --force)")
        job = q.add_job_with_options(options, task, *parameters, **parameters_keyed)
    click.echo(f"{job.rid} {job.status.value} {shown(job.task_name)}")


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
            click.echo(json.dumps(plain(job)))
        return
    table([[str(j.rid), j.status.value, j.task_name[:24], str(j.attempts), str(j.priority),
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
    click.echo(json.dumps(plain(found), indent=2))


def _each_rid(state: CliState, rids: tuple[str, ...], action: Callable[[Queuer, str], str]) -> None:
    """Apply ``action`` to every rid; report each failure and exit 1 if any failed."""
    from queuer.errors import EncryptionError, QueuerError

    failed = 0
    with state.queuer() as q:
        for rid in rids:
            try:
                click.echo(shown(action(q, rid)))
            except (QueuerError, EncryptionError, ValueError) as exc:
                failed += 1
                click.echo(f"{shown(rid)}: {one_line(exc)}", err=True)
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

    def readd(q: Queuer, rid: str) -> str:
        again = q.readd_job_from_archive(rid)
        return f"{rid} -> {again.rid} {again.status.value}"

    _each_rid(state, rids, readd)


@main.command()
@click.argument("action", type=click.Choice(["list", "pause", "resume", "remove"]), default="list")
@click.argument("name", required=False)
@pass_state
def schedules(state: CliState, action: str, name: str | None) -> None:
    """List cron schedules, or pause / resume / remove one by NAME."""
    with state.queuer() as q:
        if action == "list":
            table([[s.name, s.cron, s.timezone, s.task_name, "paused" if s.paused else "active",
                    s.next_run_at.strftime("%Y-%m-%d %H:%M:%S") if s.next_run_at else ""]
                   for s in q.get_schedules()],
                  ["name", "cron", "tz", "task", "state", "next run"])
            return
        if not name:
            raise click.UsageError(f"'schedules {action}' needs a schedule NAME")
        try:
            {"pause": q.pause_schedule, "resume": q.resume_schedule, "remove": q.remove_schedule}[action](name)
        except LookupError as exc:
            raise click.ClickException(one_line(exc)) from None
    click.echo(f"schedule {shown(name)}: {action}d")
