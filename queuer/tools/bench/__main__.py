"""A worker for the process curve and latency, run as ``python -m queuer.tools.bench --worker N``."""

from __future__ import annotations

import sys

from queuer.client.factory import new_queuer_with_db
from queuer.tools.bench.tasks import noop, started_at


def worker_main(concurrency: int) -> None:
    """A default worker on the schema of ``QUEUER_DB_*``; prints READY once it takes jobs."""
    q = new_queuer_with_db("bench-worker", concurrency, None, None)
    q.add_task(noop)
    q.add_task(started_at)
    q.install_signal_handlers()
    q.start()
    print("READY", flush=True)
    q.wait_until_stopped()


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--worker":
    worker_main(int(sys.argv[2]))
