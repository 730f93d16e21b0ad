"""The ``queuer`` command (also ``python -m queuer``).

Reads the same QUEUER_DB_* / QUEUER_DB_URL settings as the library; ``--schema``
overrides the schema. Every failure is a message and a non-zero exit, never a
traceback. The group is in ``base``; each other module holds the commands of one concern.
"""

# Imported for what importing them does: each module adds its commands to the group.
from queuer.cli import dashboard, jobs, keys, prune, schema, serve, tasks, tools, workers, workflows  # noqa: F401
from queuer.cli.base import main

__all__ = ["main"]
