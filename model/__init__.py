"""Plain dataclasses shared by every part of queuer (also re-exported by ``queuer``)."""

from model.batch_job import BatchJob
from model.job import ACTIVE_STATUSES, ENDED_STATUSES, Job, JobStatus
from model.options import OnError, Options, RetryBackoff
from model.schedule import Schedule
from model.task import Task
from model.worker import Worker, WorkerStatus

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
