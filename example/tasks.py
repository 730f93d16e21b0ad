"""Tasks shared by the example producer and worker."""

import time

import queuer


@queuer.task(name="resize")
def resize(path: str, width: int = 640) -> dict:
    time.sleep(0.01)  # pretend to work
    return {"path": path, "width": width}


@queuer.task(name="send_email")
def send_email(to: str, subject: str) -> str:
    job = queuer.current_job()
    return f"sent {subject!r} to {to} (attempt {job.attempt})"
