"""Commands that steer tasks on every worker at runtime: pause, resume, limits."""

from __future__ import annotations

import click

from queuer.cli.base import CliState, main, one_line, pass_state, shown, table


def _controlled(state: CliState, action: str, name: str) -> None:
    with state.queuer() as q:
        try:
            {"pause": q.pause_task, "resume": q.resume_task}[action](name)
        except ValueError as exc:
            raise click.BadParameter(one_line(exc), param_hint="TASK") from None
    click.echo(f"task {shown(name)}: {action}d on every worker")


@main.command()
@click.argument("task")
@pass_state
def pause(state: CliState, task: str) -> None:
    """Stop every worker from starting jobs of TASK (running ones finish) until `queuer resume`."""
    _controlled(state, "pause", task)


@main.command()
@click.argument("task")
@pass_state
def resume(state: CliState, task: str) -> None:
    """Let every worker start jobs of TASK again."""
    _controlled(state, "resume", task)


@main.command()
@click.argument("task", required=False)
@click.option("--concurrency", type=click.IntRange(min=1), default=None, help="At most this many running at once.")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=None, help="At most this many starts a second.")
@click.option("--reset", is_flag=True, help="Back to the limits the task's code sets.")
@pass_state
def limits(state: CliState, task: str | None, concurrency: int | None, rate: float | None, reset: bool) -> None:
    """List the tasks paused or limited at runtime, or set (or --reset) TASK's limits on every worker."""
    with state.queuer() as q:
        if task is None:
            if concurrency is not None or rate is not None or reset:
                raise click.UsageError("name the TASK to set limits for")
            table([[shown(c.task_name), "paused" if c.paused else "running",
                    ("-" if c.concurrency_limit is None else str(c.concurrency_limit)) if c.limits_set else "(code)",
                    ("-" if c.requests_per_second is None else f"{c.requests_per_second:g}/s") if c.limits_set else "(code)"]
                   for c in q.task_controls()],
                  ["task", "state", "concurrency", "rate"])
            return
        try:
            if reset:
                q.reset_task_limits(task)
            else:
                q.set_task_limits(task, concurrency_limit=concurrency, requests_per_second=rate)
        except ValueError as exc:
            raise click.BadParameter(one_line(exc), param_hint="TASK") from None
    click.echo(f"task {shown(task)}: " + ("limits from its code" if reset else
               f"concurrency {concurrency or 'unlimited'}, rate {f'{rate:g}/s' if rate else 'unlimited'}"))
