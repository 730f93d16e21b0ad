"""JobQueries: reading, cancelling and re-adding jobs (the facade's job queries).

queuerPy's forms and messages: ``Job not found: <rid>``, ``Job not found in
archive: <rid>``, pages of ``entries`` jobs newest first after ``last_id``.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from uuid import UUID

from queuer.client.enqueue import JobBuilder
from queuer.database.job_db import JobDB
from queuer.errors import EncryptionError, JobAlreadyEndedError, JobNotFoundError
from queuer.model.job import ENDED_STATUSES, Job, JobStatus
from queuer.model.options import Options


class JobQueries:
    def __init__(self, job_db: JobDB, builder: JobBuilder) -> None:
        self.job_db = job_db
        self.builder = builder

    def get(self, rid: UUID | str) -> Job:
        rid = as_uuid(rid)
        job = self.job_db.get_job(rid) or self.job_db.get_job_ended(rid)
        if job is None:
            raise JobNotFoundError(rid)
        return job

    def get_ended(self, rid: UUID | str) -> Job:
        rid = as_uuid(rid)
        job = self.job_db.get_job_ended(rid)
        if job is None:
            raise JobNotFoundError(rid, f"Job not found in archive: {rid}")
        return job

    def list(
        self, ended_only: bool, last_id: int | JobStatus | str | None, entries: int | None,
        status: JobStatus | str | None, task_name: str | None, limit: int, offset: int, after_id: int | None,
    ) -> builtins.list[Job]:
        if isinstance(last_id, (JobStatus, str)):  # get_jobs("RUNNING")
            status, last_id = last_id, None
        if last_id is not None or entries is not None:
            return self.newest(ended=ended_only, last_id=last_id, entries=entries)
        parsed = JobStatus.parse(status) if status is not None else None
        if ended_only and parsed is not None and parsed not in ENDED_STATUSES:
            raise ValueError(f"{parsed.value} is not an ended status; use get_jobs for active jobs")
        check_page(limit, offset)
        return self.job_db.get_jobs(
            ended=ended_only or parsed in ENDED_STATUSES, status=parsed, task_name=task_name,
            limit=limit, offset=offset, after_id=after_id,
        )

    def by_worker(
        self, worker_rid: UUID | str, last_id: int, entries: int, limit: int | None, offset: int,
    ) -> builtins.list[Job]:
        if limit is not None or offset:  # the older keyword form
            check_page(limit or 100, offset)
            return self.job_db.get_jobs(worker_rid=as_uuid(worker_rid), limit=limit or 100, offset=offset)
        return self.newest(ended=False, last_id=last_id, entries=entries, worker_rid=as_uuid(worker_rid))

    def newest(
        self, *, ended: bool, last_id: int | None, entries: int | None, worker_rid: UUID | None = None,
    ) -> builtins.list[Job]:
        last_id = last_id or 0
        entries = 100 if entries is None else entries
        if isinstance(last_id, bool) or not isinstance(last_id, int) or last_id < 0:
            raise ValueError(
                f"last_id must be the id of the last job of the previous page (0 for the first), not {last_id!r}")
        check_page(entries, 0)
        return self.job_db.get_jobs_newest(
            ended=ended, before_id=last_id or None, limit=entries, worker_rid=worker_rid
        )

    def cancel(self, rid: UUID | str) -> Job:
        rid = as_uuid(rid)
        for job in self.job_db.cancel([rid], "cancelled by request"):
            return job
        status = self.job_db.status_of(rid)
        if status is None:
            raise JobNotFoundError(rid)
        raise JobAlreadyEndedError(rid, status.value)

    def cancel_many(self, rids: Iterable[UUID | str]) -> builtins.list[Job]:
        wanted = rids_to_cancel(rids)
        return self.job_db.cancel(wanted, "cancelled by request") if wanted else []

    def readd(self, rid: UUID | str) -> Job:
        try:
            old = self.get_ended(rid)
        except JobNotFoundError:
            active = self.job_db.get_job(as_uuid(rid))
            if active is None:
                raise
            raise JobNotFoundError(active.rid, f"job {active.rid} has not ended yet (it is {active.status.value}): "
                                               "only ended jobs can be added again") from None
        stored = old.options
        if old.encrypted:
            raise EncryptionError(f"job {old.rid} is encrypted with a key this queuer does not have")
        if old.undecodable:
            raise ValueError(f"job {old.rid} cannot be added again: its stored arguments cannot be decoded "
                             f"({old.undecodable})")
        new = self.builder.build(old.task_name, old.parameters, old.parameters_keyed, stored and Options(
            on_error=stored.on_error, priority=old.priority, extra=stored.extra,
        ), origin_rid=old.rid)
        return self.job_db.insert_job(new)


def as_uuid(rid: UUID | str | Job) -> UUID:
    if isinstance(rid, UUID):
        return rid
    if isinstance(rid, Job):
        return rid.rid
    try:
        return UUID(str(rid))
    except ValueError:
        raise ValueError(f"{rid!r} is not a job rid (a UUID)") from None


def check_page(limit: int, offset: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError("limit (entries) must be a positive integer")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError("offset must be an integer >= 0")


def rids_to_cancel(rids: Iterable[UUID | str]) -> builtins.list[UUID]:
    """The rids a bulk cancel was given, checked: one rid alone is a mistake worth saying."""
    if isinstance(rids, (str, UUID, Job)):  # a str would be read as its characters
        raise TypeError("cancel_jobs takes an iterable of rids, e.g. cancel_jobs([rid]); "
                        "cancel one job with cancel_job(rid)")
    return [as_uuid(rid) for rid in rids]
