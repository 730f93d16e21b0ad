"""A FastAPI app that enqueues a job in a request and awaits its result, without blocking the event loop.

Run a worker for the task (``python example/worker.py``), then::

    pip install fastapi uvicorn
    uvicorn example.fastapi_app:app
    curl -X POST 'localhost:8000/resize?path=/images/a.png&width=64'
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException

from queuer import AsyncQueuer, JobStatus, JobWaitTimeoutError, new_async_queuer


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # One client for the app's life: its pool and LISTEN connection serve every request.
    app.state.queuer = await new_async_queuer("fastapi-app")
    try:
        yield
    finally:
        await app.state.queuer.close()


app = FastAPI(lifespan=lifespan)


@app.post("/resize")
async def resize(path: str, width: int) -> dict[str, Any]:
    aq: AsyncQueuer = app.state.queuer
    job = await aq.add_job("resize", path, width=width)  # the task's name: this process needs no worker code
    try:
        done = await aq.wait_for_job_finished(job.rid, timeout_seconds=20)
    except JobWaitTimeoutError:
        raise HTTPException(status_code=202, detail={"rid": str(job.rid), "status": "still running"}) from None
    if done.status != JobStatus.SUCCEEDED:
        raise HTTPException(status_code=502, detail={"rid": str(done.rid), "error": done.error})
    return {"rid": str(done.rid), "result": done.result}
