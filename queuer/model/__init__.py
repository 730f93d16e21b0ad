"""Plain dataclasses shared by every part of queuer (also re-exported by ``queuer``)."""

from queuer.model.batch_job import BatchJob
from queuer.model.interval import Schedule
from queuer.model.job import ACTIVE_STATUSES, ENDED_STATUSES, Job, JobStatus
from queuer.model.options import OnError, Options, RetryBackoff
from queuer.model.task import Task
from queuer.model.worker import Worker, WorkerStatus

__all__ = [
    "ACTIVE_STATUSES",
    "BatchJob",
    "ENDED_STATUSES",
    "Job",
    "JobStatus",
    "OnError",
    "Options",
    "RetryBackoff",
    "Schedule",
    "Task",
    "Worker",
    "WorkerStatus",
]
