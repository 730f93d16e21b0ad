"""run_workers: ``queuer run`` from Python, for people who embed it."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from queuer.config.settings import WorkerSettings
from queuer.supervisor.processes import ProcessSupervisor, process_count
from queuer.supervisor.runner import Supervisor, SupervisorOptions


def run_workers(
    factory: str | Callable[..., Any],
    processes: int | str = 1,
    *,
    max_concurrency: int | None = None,
    mode: str = "continuous",
    restart_on_failure: bool = False,
    restart_delay: float = 5.0,
    log_level: str = "INFO",
    shutdown_on_listener_failure: bool = False,
    metrics_port: int | None = None,
    app_dir: str = ".",
) -> int:
    """Run workers from ``factory`` until SIGTERM or SIGINT (or, in ``mode="drain"``, until nothing is left to do),
    as ``queuer run`` does with the same options; returns the exit code. Call it from the main thread.

    ``factory`` is ``"module:function"`` (or a function) that returns a Queuer with its tasks. With
    ``processes`` above 1 (or ``"auto"``: one per CPU) each worker process imports and calls it, so a function
    must be importable by its module and name.
    """
    if mode not in ("continuous", "drain"):
        raise ValueError(f"mode is 'continuous' or 'drain', not {mode!r}")
    count = process_count(str(processes))
    level = log_level.upper()
    if count == 1:
        sys.path.insert(0, os.path.abspath(app_dir))  # as celery, gunicorn and uvicorn do: the app's own first
        options = SupervisorOptions(
            max_concurrency=max_concurrency, mode=mode, restart_on_failure=restart_on_failure,
            restart_delay=restart_delay, log_level=level,
            shutdown_on_listener_failure=shutdown_on_listener_failure, metrics_port=metrics_port,
        )
        return Supervisor(factory, options).run()
    run_args = [_importable(factory), "--mode", mode, "--restart-delay", str(restart_delay), "--log-level", level,
                "--app-dir", os.path.abspath(app_dir)]
    if max_concurrency is not None:
        run_args += ["--max-concurrency", str(max_concurrency)]
    if restart_on_failure:
        run_args.append("--restart-on-failure")
    if shutdown_on_listener_failure:
        run_args.append("--shutdown-on-listener-failure")
    return ProcessSupervisor(run_args, count, WorkerSettings.from_env().shutdown_timeout, drain=mode == "drain",
                             log_level=level, metrics_port=metrics_port).run()


def _importable(factory: str | Callable[..., Any]) -> str:
    """The ``module:function`` a worker process imports the factory by."""
    if isinstance(factory, str):
        return factory
    module, name = getattr(factory, "__module__", None), getattr(factory, "__qualname__", "")
    if not module or module == "__main__" or "<" in name:
        raise ValueError(
            f"worker processes import the factory by its module and name, and {factory!r} has none they can "
            "import (a lambda, a nested function or one defined in __main__): pass 'module:function' instead")
    return f"{module}:{name}"
