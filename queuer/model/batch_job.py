"""One entry of a batch insert (``Queuer.add_jobs``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from queuer.model.options import Options


@dataclass
class BatchJob:
    """One job of a batch for ``add_jobs`` or ``add_jobs_tx``.

    ``task`` is a registered function or a task name; ``options`` left None take the worker's defaults.
    """

    task: Callable[..., Any] | str
    parameters: list[Any] = field(default_factory=list)
    parameters_keyed: dict[str, Any] = field(default_factory=dict)
    options: Options | None = None
    execute_after: datetime | timedelta | None = None
    """Shorthand for ``Options(execute_after=...)``: a datetime, or a timedelta from now."""
