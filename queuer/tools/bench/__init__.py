"""``queuer bench``: what a user gets on this machine, with no tuning.

Every measurement runs with the default configuration (``new_queuer(name, n)``,
default WorkerSettings) in a fresh schema (``queuer_bench``) of the database
from ``QUEUER_DB_*``, or of a throwaway PostgreSQL when none is set: durable
(PostgreSQL's own defaults: fsync, synchronous commit, full page writes) unless
``--fast`` turns those off. The same work done in plain SQL (the ceiling) is
measured on the same server in the same run, and the drain is printed as a
fraction of it. Prints a table and writes the figures as JSON. Modules:

- ``runner``: ``run_bench``, which measurements run and in what order;
- ``harness``: the settings, the figures and the helpers every measurement uses;
- ``throughput``: the ceiling, drains, real work, latency, worker processes, enqueue, scale;
- ``web_pages``: the web UI's pages timed over a large archive;
- ``aging``: the long runs, on request: aging (snapshot, archive, prune) and soak;
- ``tasks``: the tasks the jobs run; ``__main__``: the worker process
  (``python -m queuer.tools.bench --worker N``).

The SQL is in ``database/sql/bench.sql``.
"""

from __future__ import annotations

from queuer.tools.bench.harness import BenchSettings
from queuer.tools.bench.runner import MEASUREMENTS, ON_REQUEST, run_bench

__all__ = ["MEASUREMENTS", "ON_REQUEST", "BenchSettings", "run_bench"]
