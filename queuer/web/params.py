"""Query parameters and form fields, validated before anything reaches SQL.

Every check fails with ``BadRequest`` and a message that says what is wrong;
the app answers it with a 400. Values only ever travel to PostgreSQL as query
parameters of constant statements (``database/sql/web.sql``). Reading a POSTed
form itself (its size, encoding and CSRF field) is ``forms``'s.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from uuid import UUID

from queuer.client.registry import validate_task_name
from queuer.client.workflows import MAX_WORKFLOW_ID_LENGTH, validate_workflow_id
from queuer.model.job import ACTIVE_STATUSES, ENDED_STATUSES

MAX_TEXT = 200  # task and schedule names are at most 200 characters
MAX_VALUE = 400  # any other value
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

# What the status filter accepts: one status, or every active / every ended one.
STATUS_FILTERS: dict[str, tuple[str, ...]] = {
    "active": tuple(s.value for s in ACTIVE_STATUSES),
    "ended": tuple(s.value for s in ENDED_STATUSES),
    **{s.value.lower(): (s.value,) for s in (*ACTIVE_STATUSES, *ENDED_STATUSES)},
}
ENDED_VALUES = frozenset(s.value for s in ENDED_STATUSES)
JOB_LIST_PARAMS = frozenset({"status", "task", "since", "until", "rid", "cursor"})
NOTICES = {
    "cancelled": "The job was cancelled.",
    "requeued": "The job was added again as this new job.",
    "stopping": "The worker was asked to stop: it finishes its running jobs first.",
    "paused": "The schedule is paused.",
    "resumed": "The schedule runs again from its next tick.",
    "triggered": "The schedule's task was added as a job now.",
    "bulk": "The bulk action is done.",
    "workflow-cancelled": "The workflow's jobs that had not ended were cancelled.",
    "task-paused": "The task is paused on every worker: no new job of it starts until it is resumed "
                   "(running ones finish).",
    "task-resumed": "The task is resumed: workers start its jobs again.",
    "signed-out": "Signed out.",
}
_CURSOR_ACTIVE = re.compile(r"[0-9]{1,19}")
_CURSOR_ENDED = re.compile(r"(-?[0-9]{1,17})_(-?[0-9]{1,19})")
_HEX = re.compile(r"[0-9a-f]{8,32}")
BIGINT_MAX = 2**63 - 1


class BadRequest(Exception):
    """A parameter the pages cannot use; the message is shown to the operator."""


def check_names(items: Iterable[tuple[str, str]], allowed: frozenset[str]) -> dict[str, str]:
    """The parameters as a dict: unknown, repeated or oversized ones are a BadRequest."""
    found: dict[str, str] = {}
    for name, value in items:
        if name not in allowed:
            shown = name[:40].encode("unicode_escape").decode()
            raise BadRequest(f"unknown parameter {shown!r}; this page takes {', '.join(sorted(allowed)) or 'none'}")
        if name in found:
            raise BadRequest(f"parameter {name!r} is given more than once")
        if len(value) > MAX_VALUE:
            raise BadRequest(f"parameter {name!r} is longer than {MAX_VALUE} characters")
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
            raise BadRequest(f"parameter {name!r} contains control characters")
        found[name] = value
    return found


def parse_uuid(value: str, what: str) -> UUID:
    try:
        return UUID(value.strip())
    except ValueError:
        raise BadRequest(f"{what} must be a UUID like 6f1c2a4e-0d6b-4c5e-9a57-3f0b8e2d1c9a") from None


def parse_name(value: str, what: str) -> str:
    """A task or schedule name exactly as given: 1 to 200 characters (control characters are refused
    earlier). Never stripped: a name that another producer stored with a space at an end is still
    that name, and must be found and acted on as it is."""
    if not value or len(value) > MAX_TEXT:
        raise BadRequest(f"{what} must be 1 to {MAX_TEXT} characters")
    return value


def parse_task_name(value: str) -> str:
    """A task name the Queuer can pause or resume: its own rule for names (1 to 200 printable characters,
    no space at either end). A name stored otherwise by another producer is listed, but not paused."""
    try:
        return validate_task_name(value, "the task name")
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def task_name_ok(value: str) -> bool:
    """Whether ``parse_task_name`` takes the name: the pages offer Pause and Resume only then."""
    try:
        validate_task_name(value)
    except ValueError:
        return False
    return True


def parse_workflow_id(value: str) -> str:
    """A workflow id as the Queuer accepts one (never shown back: it may be anything a URL can carry)."""
    try:
        return validate_workflow_id(value)
    except ValueError:
        raise BadRequest(f"the workflow id must be 1 to {MAX_WORKFLOW_ID_LENGTH} printable characters, without "
                         "spaces at either end") from None


def parse_time(value: str, what: str) -> datetime:
    """ISO-8601 (a date, or a date and time, with or without a zone; no zone means UTC)."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        if len(text) > 40:
            raise ValueError
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"{what} must be an ISO-8601 time like 2024-05-01T12:30:00Z") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


def parse_rid_search(value: str) -> tuple[UUID, UUID]:
    """A rid or its first 8+ hex digits, as the range of rids it matches (the rid index serves it)."""
    digits = value.strip().lower().replace("-", "")
    if not _HEX.fullmatch(digits):
        raise BadRequest("rid must be a job rid (a UUID) or at least its first 8 hex digits")
    return UUID(digits.ljust(32, "0")), UUID(digits.ljust(32, "f"))


@dataclass(frozen=True)
class Cursor:
    """Where the next page starts: just after (ended_at, id) in the archive, or before id in the queue."""

    id: int
    at: datetime | None = None

    def encode(self) -> str:
        if self.at is None:
            return str(self.id)
        micros = (self.at - EPOCH) // timedelta(microseconds=1)
        return f"{micros}_{self.id}"


def parse_cursor(value: str, ended: bool) -> Cursor:
    """A cursor this server made; anything else, a tampered one included, is a BadRequest."""
    text = value.strip()
    if not ended:
        if _CURSOR_ACTIVE.fullmatch(text) and int(text) <= BIGINT_MAX:
            return Cursor(int(text))
        raise BadRequest("cursor is not a page position of this list; start again from the first page")
    match = _CURSOR_ENDED.fullmatch(text)
    if match is None or abs(int(match.group(2))) > BIGINT_MAX:
        raise BadRequest("cursor is not a page position of this list; start again from the first page")
    try:
        at = EPOCH + timedelta(microseconds=int(match.group(1)))
    except OverflowError:
        raise BadRequest("cursor is not a page position of this list; start again from the first page") from None
    return Cursor(int(match.group(2)), at)


@dataclass(frozen=True)
class JobFilter:
    """The jobs a list (or a bulk action) covers."""

    status: str = "active"  # a key of STATUS_FILTERS
    task: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    rid: str | None = None  # as typed; rid_range is what is searched
    rid_range: tuple[UUID, UUID] | None = None

    @property
    def statuses(self) -> tuple[str, ...]:
        return STATUS_FILTERS[self.status]

    @property
    def ended(self) -> bool:
        """Whether the list reads the archive (ordered by ended_at) rather than the queue (by id)."""
        return all(s in ENDED_VALUES for s in self.statuses)

    def params(self) -> dict[str, str]:
        """The filter as query parameters, for links and hidden form fields."""
        out = {"status": self.status}
        if self.task:
            out["task"] = self.task
        if self.since:
            out["since"] = self.since.isoformat()
        if self.until:
            out["until"] = self.until.isoformat()
        if self.rid:
            out["rid"] = self.rid
        return out

    def describe(self) -> str:
        parts = [f"status {self.status}"]
        if self.task:
            # quoted when it has spaces at an end, which a page would not show
            parts.append(f"task {self.task!r}" if self.task != self.task.strip() else f"task {self.task}")
        if self.since:
            parts.append(f"since {self.since.isoformat()}")
        if self.until:
            parts.append(f"until {self.until.isoformat()}")
        if self.rid:
            parts.append(f"rid {self.rid}")
        return ", ".join(parts)


def parse_filter(values: Mapping[str, str]) -> JobFilter:
    status = values.get("status", "").strip().lower() or "active"
    if status not in STATUS_FILTERS:
        raise BadRequest(f"status must be one of {', '.join(STATUS_FILTERS)}")
    task = parse_name(values["task"], "task") if values.get("task", "") else None
    since = parse_time(values["since"], "since") if values.get("since", "").strip() else None
    until = parse_time(values["until"], "until") if values.get("until", "").strip() else None
    if since and until and since >= until:
        raise BadRequest("since must be before until")
    rid = values.get("rid", "").strip() or None
    return JobFilter(status, task, since, until, rid, parse_rid_search(rid) if rid else None)


AUDIT_PARAMS = frozenset({"action", "rid", "cursor"})


@dataclass(frozen=True)
class AuditFilter:
    action: str | None = None
    rid: UUID | None = None

    def params(self) -> dict[str, str]:
        out = {}
        if self.action:
            out["action"] = self.action
        if self.rid:
            out["rid"] = str(self.rid)
        return out


def parse_audit(values: Mapping[str, str], actions: tuple[str, ...]) -> tuple[AuditFilter, int | None]:
    """The audit page's filter (an action of ``actions``, a job's rid) and its cursor."""
    action = values.get("action", "") or None
    if action is not None and action not in actions:
        raise BadRequest(f"action must be one of {', '.join(actions)}")
    rid = parse_uuid(values["rid"], "rid") if values.get("rid", "").strip() else None
    cursor = None
    text = values.get("cursor", "").strip()
    if text:
        if not _CURSOR_ACTIVE.fullmatch(text) or int(text) > BIGINT_MAX:
            raise BadRequest("cursor is not a page position of this list; start again from the first page")
        cursor = int(text)
    return AuditFilter(action, rid), cursor


def parse_notice(values: Mapping[str, str]) -> str | None:
    """The message a redirect after an action asks for, from a fixed set (never text from the URL)."""
    code = values.get("notice")
    if code is None:
        return None
    if code not in NOTICES:
        raise BadRequest("notice is not one of this server's messages")
    return NOTICES[code]
