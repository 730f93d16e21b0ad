"""The ``queuer`` group and what its commands share: the settings, opening the database,
the one-line errors, and output that is safe for a terminal."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass, replace
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Any
from uuid import UUID

import click
import psycopg

from queuer.config.database import DatabaseConfiguration
from queuer.database.connect import first_line
from queuer.errors import ConfigurationError, QueuerError

if TYPE_CHECKING:
    from queuer.client.queuer import Queuer

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
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        from queuer.database.connection import connect

        config = self.config()
        try:
            conn = connect(config, application_name="queuer:cli")
        except QueuerError as exc:
            raise click.ClickException(str(exc)) from None
        with conn:
            yield conn

    def queuer(self) -> Queuer:
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
            raise click.ClickException(one_line(exc)) from None


def one_line(exc: BaseException) -> str:
    """An error as the single line the command prints."""
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


def plain(value: Any) -> Any:
    """``value`` as JSON can hold it: dataclasses and dicts as objects, enums, UUIDs and times as text."""
    if is_dataclass(value) and not isinstance(value, type):
        return {k: plain(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (UUID, datetime)):
        return str(value)
    return value


def table(rows: list[list[str]], headers: list[str]) -> None:
    """Print ``rows`` in columns as wide as their widest cell, every cell made safe by ``shown``."""
    rows = [[shown(cell) for cell in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)))
