"""A worker service: runs until SIGTERM/SIGINT, then shuts down gracefully.

    QUEUER_DB_HOST=... python example/worker.py
"""

import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tasks  # noqa: F401  registers the tasks

from queuer import OnError, RetryBackoff, new_queuer

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

q = new_queuer(
    os.environ.get("WORKER_NAME", "example-worker"),
    int(os.environ.get("WORKER_CONCURRENCY", "8")),
    OnError(max_retries=3, retry_delay=1, retry_backoff=RetryBackoff.EXPONENTIAL, timeout=60),
)
q.install_signal_handlers()
q.start()
q.wait_until_stopped()
