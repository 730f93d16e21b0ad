"""Named SQL statements, kept as SQL in ``database/sql/*.sql``.

A file holds blocks that start with ``-- name: <name>``; a block whose name
starts with "_" is a fragment that others take in as ``{_name}``. ``{schema}`` in the text
is replaced by the quoted schema name (``{archived_columns}`` by ARCHIVED_COLUMNS
and ``{notify_items}`` by NOTIFY_ITEMS) once, when the statements are loaded, so
each statement is a constant string that psycopg can prepare.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING

from queuer.config.database import quote_identifier

if TYPE_CHECKING:
    from typing_extensions import LiteralString

# The columns a job keeps when it moves to job_archive ({archived_columns} in
# the SQL files); status, results and error are set by each statement, and so
# are failures, rescues and crashes (a statement may count one more); updated_at
# and ended_at take the archive's defaults.
ARCHIVED_COLUMNS = (
    "id, rid, task_name, parameters, parameters_keyed, options, priority, scheduled_at, started_at,"
    " worker_rid, attempts, max_attempts, timeout_seconds, schedule_count, unique_key, origin_rid, created_at,"
    " arguments_enc, workflow_id, depends_on, dependents, steps, snoozes, group_key"
)

# Sends the JSON arrays of a statement's "items" CTE ({notify_items} in the SQL
# files) as NOTIFY payloads {"j": [item, ...]}, in chunks under PostgreSQL's
# 8000-byte limit: a chunk holds items until their text (each counted with its
# 2-byte ", ") passes 4800 bytes, so it is at most 4800 bytes plus one item, and
# the largest item is about 3060 bytes (a 500-character serial key of control
# characters, each escaped as \u00XX) plus the 11 bytes of {"j" : [...]}.
NOTIFY_ITEMS = (
    "SELECT pg_notify(%(channel)s, json_build_object('j', json_agg(item))::text)"
    " FROM (SELECT item, sum(octet_length(item::text) + 2) OVER (ROWS UNBOUNDED PRECEDING) / 4800 AS chunk"
    " FROM items) AS chunked"
    " GROUP BY chunk"
)

_NAME_LINE = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)
# {_fragment}: the text of the block named _fragment (a piece several statements share).
_FRAGMENT = re.compile(r"\{(_\w+)\}")
_COMMENT_LINE = re.compile(r"^\s*--.*\n", re.MULTILINE)


def _parse(text: str) -> dict[str, str]:
    statements: dict[str, str] = {}
    parts = _NAME_LINE.split(text)
    # parts = [preamble, name1, body1, name2, body2, ...]
    for name, body in zip(parts[1::2], parts[2::2]):
        if name in statements:
            raise ValueError(f"SQL statement {name!r} is defined twice")
        statements[name] = body.strip().rstrip(";")
    return statements


@cache
def _templates() -> dict[str, str]:
    statements: dict[str, str] = {}
    folder = resources.files("queuer.database") / "sql"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".sql"):
            for name, body in _parse(entry.read_text(encoding="utf-8")).items():
                if name in statements:
                    raise ValueError(f"SQL statement {name!r} is defined in two files")
                statements[name] = body
    fragments = {name: _COMMENT_LINE.sub("", body) for name, body in statements.items() if name.startswith("_")}
    return {name: _FRAGMENT.sub(lambda m: fragments[m.group(1)], body)
            for name, body in statements.items() if not name.startswith("_")}


class Queries:
    """The statements for one schema: ``Queries("app").claim_jobs`` is SQL text, typed as a
    ``LiteralString`` as psycopg asks of a query."""

    def __init__(self, schema: str) -> None:
        quoted = quote_identifier(schema)
        self.schema = schema
        self.schema_quoted = quoted
        self._statements: dict[str, LiteralString] = {
            name: body.replace("{schema}", quoted).replace("{archived_columns}", ARCHIVED_COLUMNS)
            .replace("{notify_items}", NOTIFY_ITEMS)
            for name, body in _templates().items()
        }

    def __getattr__(self, name: str) -> LiteralString:
        # Text from our own files with only our quoted schema put in: as constant as a literal.
        try:
            return self._statements[name]
        except KeyError:
            raise AttributeError(f"no SQL statement named {name!r}") from None
