"""A producer: adds jobs and leaves (it never calls start())."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tasks

from queuer import BatchJob, Options, new_queuer

q = new_queuer("example-producer", 1)
job = q.add_job(tasks.resize, "/images/a.png", width=300)
print("added", job.rid)
urgent = q.add_job_with_options(Options(priority=10), tasks.send_email, "ops@example.com", subject="hello")
print("added urgent", urgent.rid)
rids = q.add_jobs([BatchJob(task=tasks.resize, parameters=[f"/images/{i}.png"]) for i in range(100)])
print(f"added {len(rids)} more")
q.stop()
