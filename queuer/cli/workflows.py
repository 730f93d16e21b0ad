"""Commands on workflows: show one, cancel one."""

from __future__ import annotations

import json

import click

from queuer.cli.base import CliState, main, one_line, pass_state, plain, shown, table


@main.command()
@click.argument("workflow_id")
@click.option("--cancel", "cancel_it", is_flag=True, help="Cancel every job of it that has not ended.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per job.")
@pass_state
def workflow(state: CliState, workflow_id: str, cancel_it: bool, as_json: bool) -> None:
    """Show a workflow's jobs (what each waits for, its status), or cancel it."""
    from queuer.errors import WorkflowNotFoundError

    with state.queuer() as q:
        try:
            if cancel_it:
                cancelled = q.cancel_workflow(workflow_id)
                click.echo(f"workflow {shown(workflow_id)}: {len(cancelled)} job(s) cancelled")
                return
            info = q.get_workflow(workflow_id)
        except WorkflowNotFoundError as exc:
            raise click.ClickException(one_line(exc)) from None
    if as_json:
        for job in info.jobs:
            click.echo(json.dumps(plain(job)))
        return
    counts = ", ".join(f"{n} {status.value.lower()}" for status, n in sorted(info.counts().items()))
    click.echo(f"workflow {shown(info.id)}: {info.status.value} ({counts})")
    index = {job.rid: i for i, job in enumerate(info.jobs, 1)}
    table([[str(index[job.rid]), str(job.rid), job.status.value, shown(job.task_name[:24]),
            ",".join(str(index.get(parent, "?")) for parent in job.depends_on) or "-"]
           for job in info.jobs],
          ["#", "rid", "status", "task", "after #"])
