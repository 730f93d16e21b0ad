"""A script that adds one job and waits for its result."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tasks

from queuer import JobStatus, new_queuer

with new_queuer("example-script", 1) as q:
    job = q.add_job(tasks.resize, "/images/b.png", width=128)
    done = q.wait_for_job_finished(job.rid, timeout_seconds=60)
    if done.status != JobStatus.SUCCEEDED:
        sys.exit(f"job {done.rid} ended {done.status.value}: {done.error}")
    print("result:", done.result)
