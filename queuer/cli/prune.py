"""``queuer prune``: the archive's retention, with a guard against deleting most of it by a slip."""

from __future__ import annotations

import re
import sys
from typing import Any

import click
import psycopg

from queuer.cli.base import CliState, main, pass_state, shown

PRUNE_PARTITION_SECONDS = 86400.0
"""The partitions made ahead, if any are missing, are a day each (WorkerSettings.archive_partition)."""
PRUNE_CONFIRM_ABOVE = 10_000
"""Pruning more archived jobs than this (or all of them) asks for --yes."""
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
