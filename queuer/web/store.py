"""The web UI's own tables (migration 0007): the sessions epoch, signed-out sessions, the audit log.

Why in the database rather than in the server: every server on the schema
(a read-only one beside a read-write one, two behind a load balancer, the one
after a restart) sees a sign-out, an epoch bump and the audit log at once,
and ``queuer web --revoke-sessions`` reaches servers that are running.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

from queuer.database.connection import Database

log = logging.getLogger("queuer.web")

#: what the audit log records, as shown in its filter
AUDIT_ACTIONS = ("sign-in", "sign-out", "cancel", "requeue", "stop-worker", "schedule-pause", "schedule-resume",
                 "schedule-trigger", "bulk-cancel", "bulk-requeue", "revoke-sessions")

SESSION_STATE = """
SELECT (SELECT session_epoch FROM {schema}.web_state) AS epoch,
       EXISTS (SELECT 1 FROM {schema}.web_session_revoked WHERE session_id = %(id)s) AS revoked
"""
EPOCH = "SELECT session_epoch FROM {schema}.web_state"
REVOKE = """
WITH gone AS (DELETE FROM {schema}.web_session_revoked WHERE expires_at < now() - interval '1 hour')
INSERT INTO {schema}.web_session_revoked (session_id, expires_at)
VALUES (%(id)s, %(expires)s)
ON CONFLICT (session_id) DO NOTHING
"""
BUMP_EPOCH = """
WITH gone AS (DELETE FROM {schema}.web_session_revoked)
UPDATE {schema}.web_state SET session_epoch = session_epoch + 1, epoch_changed_at = now()
RETURNING session_epoch
"""
RECORD = """
INSERT INTO {schema}.web_audit (client, credential, action, target, rids, outcome)
VALUES (%(client)s, %(credential)s, %(action)s, %(target)s, %(rids)s, %(outcome)s)
"""
AUDIT_COLUMNS = "id, at, client, credential, action, target, cardinality(rids) AS rid_count, rids[1:10] AS rids, outcome"


@dataclass
class AuditPage:
    rows: list[dict[str, Any]]
    next_cursor: int | None  # the id the next (older) page starts below
    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


class WebStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.schema = db.queries.schema_quoted

    def _sql(self, text: str) -> str:
        return text.replace("{schema}", self.schema)

    # -- sessions --------------------------------------------------------------------

    def epoch(self) -> int:
        row = self.db.execute_one(self._sql(EPOCH))
        return int(row["session_epoch"]) if row else 1

    def session_valid(self, session_id: str, epoch: int) -> bool:
        """Whether a session of this epoch and id has neither signed out nor been revoked by an epoch bump."""
        row = self.db.execute_one(self._sql(SESSION_STATE), {"id": session_id})
        return row is not None and row["epoch"] == epoch and not row["revoked"]

    def revoke(self, session_id: str, expires: datetime) -> None:
        """Sign a session out for good (kept until the cookie would have expired anyway)."""
        self.db.execute(self._sql(REVOKE), {"id": session_id, "expires": expires})

    def bump_epoch(self) -> int:
        """End every session; return the new epoch."""
        row = self.db.execute_one(self._sql(BUMP_EPOCH))
        assert row is not None
        return int(row["session_epoch"])

    # -- the audit log ---------------------------------------------------------------

    def record(self, client: str, credential: str, action: str, target: str | None = None,
               rids: Sequence[UUID] = (), outcome: str = "done") -> None:
        self.db.execute(self._sql(RECORD), {"client": client[:100], "credential": credential, "action": action,
                                            "target": None if target is None else target[:500],
                                            "rids": list(rids), "outcome": outcome[:1000]})

    def page(self, action: str | None, rid: UUID | None, cursor: int | None, limit: int) -> AuditPage:
        """Newest first, ``limit`` at a time by keyset on id."""
        conditions: list[str] = ["true"]
        params: dict[str, Any] = {"limit": limit + 1}
        if action is not None:
            conditions.append("action = %(action)s")
            params["action"] = action
        if rid is not None:
            conditions.append("rids @> ARRAY[%(rid)s]::uuid[]")
            params["rid"] = rid
        if cursor is not None:
            conditions.append("id < %(cursor)s")
            params["cursor"] = cursor
        query = (f"SELECT {AUDIT_COLUMNS}, now() AS now FROM {self.schema}.web_audit "
                 f"WHERE {' AND '.join(conditions)} ORDER BY id DESC LIMIT %(limit)s")
        rows = self.db.execute(query, params)
        now = rows[0]["now"] if rows else self.db.execute_one("SELECT now() AS now")["now"]  # type: ignore[index]
        more = len(rows) > limit
        rows = rows[:limit]
        return AuditPage(rows, rows[-1]["id"] if more and rows else None, now)
