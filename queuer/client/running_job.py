"""What a running job may ask of the queuer that runs it: its dependencies, its workflow, its steps,
and completing it inside its own transaction (``JobServices``, set on each job's context by the worker)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any
from uuid import UUID

from queuer.client.workflows import Workflow
from queuer.database.attempt_db import AttemptDB
from queuer.database.callers import check_callers_connection, on_callers_connection
from queuer.database.workflow_db import WorkflowDB
from queuer.errors import CompletionRefusedError, StepNotSavedError
from queuer.model.context import JobContext
from queuer.model.job import Job
from queuer.model.rows import SUCCEEDED, Outcome
from queuer.payload.encryption import Keyring
from queuer.payload.serialization import storable_size, to_json


class RunningJobServices:
    """What a running job may ask for (``JobServices``): its dependencies, its steps, its workflow."""

    def __init__(self, workflow_db: WorkflowDB, attempt_db: AttemptDB, keyring: Keyring | None,
                 new_workflow: Callable[[str], Workflow], worker_rid: Callable[[], UUID], max_result_bytes: int) -> None:
        self.workflow_db = workflow_db
        self.attempt_db = attempt_db
        self.max_result_bytes = max_result_bytes
        self.keyring = keyring
        self.new_workflow = new_workflow
        self.worker_rid = worker_rid

    def dependencies(self, context: JobContext) -> list[Job]:
        return self.workflow_db.dependencies(context.depends_on)

    def workflow(self, context: JobContext) -> Workflow:
        assert context.workflow_id is not None
        return self.new_workflow(context.workflow_id)

    def complete_tx(self, context: JobContext, conn: Any, result: Any) -> None:
        conn = check_callers_connection(conn)
        text = to_json(result, f"the result of job {context.rid}")
        size = storable_size(text, f"the result of job {context.rid}")
        if size > self.max_result_bytes:
            raise ValueError(f"the result of job {context.rid} is {size:,} bytes of JSON, over the limit of "
                             f"{self.max_result_bytes:,} (WorkerSettings.max_payload_bytes)")
        if self.keyring is not None:
            sealed = self.keyring.seal_results(text, context.rid)
            outcome = Outcome(context.id, context.attempt, SUCCEEDED, results_enc=sealed)
        else:
            outcome = Outcome(context.id, context.attempt, SUCCEEDED, results=text)
        context.completed_in_tx = True
        with on_callers_connection(conn):
            if not self.attempt_db.complete_in_tx(conn, self.worker_rid(), outcome):
                raise CompletionRefusedError(
                    f"job {context.rid}: this attempt no longer holds the job (it was rescued, cancelled or timed "
                    "out), so it cannot complete it; the transaction is aborted and nothing of it will commit")

    def stored_step(self, context: JobContext, name: str) -> tuple[bool, Any]:
        stored = context.steps.get(name) if context.steps else None
        if not isinstance(stored, dict):
            return False, None
        if "e" in stored and self.keyring is not None:
            # Sealed to its job and its name: it cannot be moved to another job or step.
            plain = self.keyring.decrypt(base64.b64decode(stored["e"]), context.rid, f"step {name}")
            return True, json.loads(plain)
        return ("v" in stored), stored.get("v")

    def store_step(self, context: JobContext, name: str, value: Any) -> Any:
        text = to_json(value, f"the result of step {name!r}")
        if self.keyring is not None:
            sealed = self.keyring.encrypt(text.encode(), context.rid, f"step {name}")
            stored: dict[str, Any] = {"e": base64.b64encode(sealed).decode()}
        else:
            stored = {"v": json.loads(text)}
        if not self.workflow_db.save_step(context.id, context.attempt, self.worker_rid(), name, json.dumps(stored)):
            raise StepNotSavedError(
                f"step {name!r} of job {context.rid} ran, but its result could not be kept: this attempt no "
                "longer holds the job (it was cancelled, timed out or given to another worker)")
        if context.steps is None:
            context.steps = {}
        context.steps[name] = stored
        return json.loads(text)

