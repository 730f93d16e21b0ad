"""queuer: a PostgreSQL job queue for Python, synchronous and thread-pooled.

Everything public is importable from here::

    import queuer
    from queuer import new_queuer, Options, OnError, RetryBackoff, Schedule, BatchJob, JobStatus
"""

from queuer.client.factory import new_queuer, new_queuer_with_db
from queuer.client.queuer import Queuer
from queuer.client.registry import task, task_with_name
from queuer.config.database import DatabaseConfiguration
from queuer.config.settings import WorkerSettings
from queuer.errors import (
    ConfigurationError,
    ConnectionLostError,
    DatabaseUnreachableError,
    DuplicateJobError,
    DuplicateTaskError,
    EncryptionError,
    JobAlreadyEndedError,
    JobNotFoundError,
    JobOutcomeUnknownError,
    JobWaitTimeoutError,
    QueuerError,
    QueuerStoppedError,
    TaskNotRegisteredError,
    WorkerNotFoundError,
)
from queuer.model import (
    BatchJob,
    Job,
    JobStatus,
    OnError,
    Options,
    RetryBackoff,
    Schedule,
    Task,
    Worker,
    WorkerStatus,
)
from queuer.model.context import JobContext, current_job
from queuer.model.cron_schedule import CronSchedule

__version__ = "0.1.0"

__all__ = [
    "BatchJob",
    "ConfigurationError",
    "ConnectionLostError",
    "CronSchedule",
    "DatabaseConfiguration",
    "DatabaseUnreachableError",
    "DuplicateJobError",
    "DuplicateTaskError",
    "EncryptionError",
    "Job",
    "JobAlreadyEndedError",
    "JobContext",
    "JobNotFoundError",
    "JobOutcomeUnknownError",
    "JobStatus",
    "JobWaitTimeoutError",
    "OnError",
    "Options",
    "Queuer",
    "QueuerError",
    "QueuerStoppedError",
    "RetryBackoff",
    "Schedule",
    "Task",
    "TaskNotRegisteredError",
    "Worker",
    "WorkerNotFoundError",
    "WorkerSettings",
    "WorkerStatus",
    "current_job",
    "new_queuer",
    "new_queuer_with_db",
    "task",
    "task_with_name",
]
