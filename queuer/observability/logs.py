"""Log records that carry the running job: ``%(job_rid)s`` and ``%(task_name)s``."""

from __future__ import annotations

import logging

from queuer.model.context import _current

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(task_name)s %(job_rid)s] %(message)s"


class JobContextFilter(logging.Filter):
    """Add the job running in this thread (or "-") to every record; install on a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = _current.get()
        record.job_rid = str(ctx.rid) if ctx else "-"
        record.task_name = ctx.task_name if ctx else "-"
        return True


def configure_logging(level: str = "INFO") -> None:
    """Root logging with the job context in each line (used by ``queuer run``)."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(JobContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
