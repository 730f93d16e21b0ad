"""queuerPy's constructors."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from queuer.client.queuer import Queuer
from queuer.config.database import DatabaseConfiguration
from queuer.config.settings import WorkerSettings
from queuer.model.options import OnError


def new_queuer(
    name: str,
    max_concurrency: int,
    *options: OnError,
    settings: WorkerSettings | None = None,
    resources: Mapping[str, Any] | None = None,
) -> Queuer:
    """A Queuer configured from ``QUEUER_DB_*`` and ``QUEUER_ENCRYPTION_KEY``; schema installed if missing."""
    return new_queuer_with_db(
        name,
        max_concurrency,
        os.environ.get("QUEUER_ENCRYPTION_KEY") or None,
        None,
        *options,
        settings=settings,
        resources=resources,
    )


def new_queuer_with_db(
    name: str,
    max_concurrency: int,
    encryption_key: str | None,
    db_config: DatabaseConfiguration | None,
    *options: OnError,
    settings: WorkerSettings | None = None,
    resources: Mapping[str, Any] | None = None,
    install: bool = True,
    register: bool = True,
) -> Queuer:
    """A Queuer on an explicit database (``None``: from the environment)."""
    return Queuer(
        name, max_concurrency, encryption_key, db_config, *options, settings=settings, resources=resources,
        install=install, register=register,
    )
