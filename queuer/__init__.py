"""queuer: a PostgreSQL job queue for Python, synchronous and thread-pooled.

Everything public is importable from here:

```python
import queuer
from queuer import new_queuer, Options, OnError, RetryBackoff, Schedule, BatchJob, JobStatus
```
"""

from queuer.client.async_queuer import AsyncQueuer, new_async_queuer
from queuer.client.factory import new_queuer, new_queuer_with_db
from queuer.client.queuer import Queuer
from queuer.client.registry import task, task_with_name
from queuer.client.workflows import Workflow
from queuer.config.database import DatabaseConfiguration
from queuer.config.settings import WorkerSettings
from queuer.errors import (
    CompletionRefusedError,
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
    StepNotSavedError,
    TaskNotRegisteredError,
    UnknownDependencyError,
    WorkerNotFoundError,
    WorkflowNotFoundError,
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
from queuer.model.context import JobContext, Snooze, current_job
from queuer.model.control import TaskControl
from queuer.model.cron import CronSchedule
from queuer.model.workflow import WorkflowInfo, WorkflowJob
from queuer.supervisor.run import run_workers

__version__ = "0.1.0"

__all__ = [
    "AsyncQueuer",
    "BatchJob",
    "CompletionRefusedError",
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
    "RetryBackoff",
    "Schedule",
    "Snooze",
    "StepNotSavedError",
    "Task",
    "TaskControl",
    "TaskNotRegisteredError",
    "UnknownDependencyError",
    "Worker",
    "WorkerNotFoundError",
    "WorkerSettings",
    "WorkerStatus",
    "Workflow",
    "WorkflowInfo",
    "WorkflowJob",
    "WorkflowNotFoundError",
    "current_job",
    "new_async_queuer",
    "new_queuer",
    "new_queuer_with_db",
    "run_workers",
    "task",
    "task_with_name",
]


def __getattr__(name: str) -> object:
    # Names kept for code written against older versions: they still import, with a warning.
    if name == "QueuerStoppedError":
        import warnings

        from queuer import errors

        warnings.warn("QueuerStoppedError is never raised (a stopped queuer reopens its connections when used "
                      "again) and will be removed in 1.0; stop catching it", DeprecationWarning, stacklevel=2)
        return errors.QueuerStoppedError
    raise AttributeError(f"module 'queuer' has no attribute {name!r}")
