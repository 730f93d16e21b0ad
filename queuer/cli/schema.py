"""Commands on queuer's tables: install, upgrade, uninstall, verify, durability, autovac, grant."""

from __future__ import annotations

import click

from queuer.cli.base import DURABILITY, CliState, main, pass_state


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
