"""A test kit for code that uses queuer, and a pytest plugin (loaded by itself once queuer is installed).

Fixtures (from the plugin): ``queuer_db``, a throwaway PostgreSQL with a fresh
schema per test and ``QUEUER_DB_*`` set to it; ``queuer_server``, the
session's server. Helpers:

```python
from queuer.testing import assert_enqueued, drain, refute_enqueued, run_task
```
"""

from queuer.testing.assertions import assert_enqueued, enqueued_jobs, refute_enqueued
from queuer.testing.running import drain, job_context, run_task, run_task_in

__all__ = [
    "assert_enqueued",
    "drain",
    "enqueued_jobs",
    "job_context",
    "refute_enqueued",
    "run_task",
    "run_task_in",
]
