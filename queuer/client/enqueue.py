"""JobBuilder: turns ``add_job`` arguments into rows ready to insert.

Everything that can be wrong with a job is found here, before anything is
written: an unregistered task, arguments that are not JSON or too large,
options of the wrong type. Arguments are serialized (and encrypted) once.
"""

from __future__ import annotations

import json
from collections import abc
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from queuer.client.tasks import TaskSet
from queuer.config.settings import WorkerSettings
from queuer.database.job_db import DuplicateKeyError
from queuer.errors import DuplicateJobError
from queuer.model.batch_job import BatchJob
from queuer.model.ids import new_rid
from queuer.model.options import OnError, Options
from queuer.model.rows import NewJob
from queuer.observability.tracing import Sending
from queuer.payload.encryption import Keyring
from queuer.payload.serialization import storable_size, to_json

_NO_OPTIONS = Options()


class JobBuilder:
    def __init__(
        self, tasks: TaskSet, settings: WorkerSettings, default_on_error: OnError | None, keyring: Keyring | None,
    ) -> None:
        self.tasks = tasks
        self.settings = settings
        self.default_on_error = default_on_error
        self.keyring = keyring
        self._default_options_json = (
            to_json({"on_error": default_on_error.to_dict()}, "the default OnError") if default_on_error else None
        )

    def build(
        self,
        task: Callable[..., Any] | str,
        parameters: Sequence[Any],
        parameters_keyed: Mapping[str, Any],
        options: Options | None,
        origin_rid: UUID | None = None,
        tracing: Sending | None = None,
        rid: UUID | None = None,
    ) -> NewJob:
        name = self.tasks.name_of(task)
        if options is not None and not isinstance(options, Options):
            raise TypeError(f"options must be Options, not {type(options).__name__}")
        if type(parameters_keyed) is not dict and not isinstance(parameters_keyed, abc.Mapping):
            raise TypeError("parameters_keyed must be a dict of keyword arguments")
        # Empty arguments and default options are the common case in batches: no encoder for them.
        size = 0
        if parameters:
            params = to_json(list(parameters), f"a positional argument of job {name!r}")
            size += storable_size(params, f"a positional argument of job {name!r}")
        else:
            params = "[]"
        if parameters_keyed:
            keyed = to_json(dict(parameters_keyed), f"a keyword argument of job {name!r}")
            size += storable_size(keyed, f"a keyword argument of job {name!r}")
        else:
            keyed = "{}"
        if size > self.settings.max_payload_bytes:
            raise ValueError(
                f"the arguments of job {name!r} are {size:,} bytes of JSON, over the limit of "
                f"{self.settings.max_payload_bytes:,} (WorkerSettings.max_payload_bytes); store large "
                "data elsewhere and pass a reference"
            )
        on_error = (options.on_error if options else None) or self.default_on_error
        if options is None:
            stored_json = self._default_options_json
            options = _NO_OPTIONS
        else:
            stored = options.to_dict()
            if on_error is not None:
                stored["on_error"] = on_error.to_dict()
            stored_json = to_json(stored, f"the options of job {name!r}") if stored else None
            if stored_json is not None:
                storable_size(stored_json, f"the options of job {name!r}")
        trace = tracing.start(name) if tracing is not None else None
        if trace is not None:  # the producer span's context travels with the job
            stored_json = to_json({**(json.loads(stored_json) if stored_json else {}), "trace": trace},
                                  f"the options of job {name!r}")
        schedule = options.schedule
        after = options.execute_after
        scheduled_at = after if isinstance(after, datetime) else (schedule.start if schedule is not None else None)
        rid = rid or new_rid()
        sealed = None
        if self.keyring is not None:
            sealed = self.keyring.seal_arguments(params, keyed, origin_rid or rid)
            params, keyed = "[]", "{}"
        return NewJob(
            rid=rid,
            task_name=name,
            parameters=params,
            parameters_keyed=keyed,
            arguments_enc=sealed,
            origin_rid=origin_rid,
            options=stored_json,
            priority=options.priority,
            scheduled_at=scheduled_at,
            delay_seconds=after.total_seconds() if isinstance(after, timedelta) else 0.0,
            max_attempts=on_error.max_attempts if on_error else 1,
            timeout_seconds=on_error.timeout_seconds if on_error else None,
            unique_key=options.unique_key,
            serial_key=options.serial_key,
            group_key=options.group_key,
            skip_duplicate=options.on_duplicate == "skip",
            replace_duplicate=options.on_duplicate == "replace",
            unique_for_seconds=options.unique_for.total_seconds() if options.unique_for is not None else None,
            crash_budget=options.crash_budget,
        )

    def build_batch(self, batch_jobs: Sequence[BatchJob], tracing: Sending | None = None) -> Iterator[NewJob]:
        """Rows of a batch, built one by one (COPY sends each as it is built).

        A bad item raises inside the COPY's transaction, so nothing of the batch is written.
        """
        for index, item in enumerate(batch_jobs):
            try:
                options = item.options
                if item.execute_after is not None:
                    options = replace(options or Options(), execute_after=item.execute_after)
                yield self.build(item.task, item.parameters or (), item.parameters_keyed or {}, options,
                                 tracing=tracing)
            except (TypeError, ValueError, LookupError) as exc:
                exc.args = (f"batch item {index}: {exc}",)
                raise


def check_batch(batch_jobs: Sequence[Any]) -> None:
    for index, item in enumerate(batch_jobs):
        if not isinstance(item, BatchJob):
            raise TypeError(f"add_jobs takes BatchJob items; item {index} is {type(item).__name__}")


@contextmanager
def duplicates_as_errors() -> Iterator[None]:
    try:
        yield
    except DuplicateKeyError as exc:
        raise DuplicateJobError(exc.unique_key) from None
