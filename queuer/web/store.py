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
from queuer.database.reading import read_transaction

log = logging.getLogger("queuer.web")

AUDIT_ACTIONS = ("sign-in", "sign-out", "cancel", "requeue", "stop-worker", "schedule-pause", "schedule-resume",
                 "schedule-trigger", "bulk-cancel", "bulk-requeue", "cancel-workflow", "pause-task", "resume-task",
                 "revoke-sessions")
"""What the audit log records, as shown in its filter."""


@dataclass
class AuditPage:
    rows: list[dict[str, Any]]
    next_cursor: int | None  # the id the next (older) page starts below
    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


class WebStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.sql = db.queries

    # -- sessions --------------------------------------------------------------------

    def epoch(self) -> int:
        row = self.db.execute_one(self.sql.web_session_epoch)
        return int(row["session_epoch"]) if row else 1

    def session_valid(self, session_id: str, epoch: int) -> bool:
        """Whether a session of this epoch and id has neither signed out nor been revoked by an epoch bump."""
        row = self.db.execute_one(self.sql.web_session_state, {"id": session_id})
        return row is not None and row["epoch"] == epoch and not row["revoked"]

    def revoke(self, session_id: str, expires: datetime) -> None:
        """Sign a session out for good (kept until the cookie would have expired anyway)."""
        self.db.execute(self.sql.web_revoke_session, {"id": session_id, "expires": expires})

    def bump_epoch(self) -> int:
        """End every session; return the new epoch."""
        row = self.db.execute_one(self.sql.web_bump_epoch)
        assert row is not None
        return int(row["session_epoch"])

    # -- the audit log ---------------------------------------------------------------

    def record(self, client: str, credential: str, action: str, target: str | None = None,
               rids: Sequence[UUID] = (), outcome: str = "done") -> None:
        self.db.execute(self.sql.web_record_audit, {"client": client[:100], "credential": credential,
                                                    "action": action, "rids": list(rids), "outcome": outcome[:1000],
                                                    "target": None if target is None else target[:500]})

    def page(self, action: str | None, rid: UUID | None, cursor: int | None, limit: int) -> AuditPage:
        """Newest first, ``limit`` at a time by keyset on id."""
        params = {"action": action, "rid": rid, "before_id": cursor, "limit": limit + 1}
        with read_transaction(self.db) as cur:
            rows = cur.execute(self.sql.web_audit_page, params).fetchall()
            if rows:
                now = rows[0]["now"]
            else:
                found = cur.execute(self.sql.db_now).fetchone()
                assert found is not None
                now = found["db_now"]
        more = len(rows) > limit
        rows = rows[:limit]
        return AuditPage(rows, rows[-1]["id"] if more and rows else None, now)

    def current_role(self) -> str:
        """The database role this server acts as, for the audit log of the command line."""
        row = self.db.execute_one(self.sql.web_current_role)
        return str(row["role"]) if row else "?"
