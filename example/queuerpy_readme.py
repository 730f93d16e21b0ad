"""queuerPy's README examples, run against queuer with only the imports changed.

Prints one line per job it added: "<rid> <status> <results as JSON>".
"""

import json

import queuer
from queuer import BatchJob, OnError, Options, new_queuer


def example_task(*args, **kwargs):
    return {"args": list(args), "kwargs": kwargs}


def my_task(*args, **kwargs):
    return {"args": list(args), "kwargs": kwargs}


@queuer.task(name="optionalName")
def decorated_task():
    return "decorated"


# Getting started
q = new_queuer("exampleWorker", 3)
q.add_task(example_task)
q.start()

added = []
job = q.add_job(example_task, 5, "12")
added.append(job.rid)
job = q.add_job(example_task, paramKeyed1="test", debug=True)
added.append(job.rid)
job = q.add_job(example_task, 5, "12", paramKeyed1="test", debug=True)
added.append(job.rid)
added.append(q.add_job("optionalName").rid)

# add_job / add_job_with_options examples, with the instance named "queuer"
queuer = q
queuer.add_task(my_task)
param1, param2 = "p1", "p2"
job = queuer.add_job(my_task, "arg1", paramKeyed1="test", paramKeyed2=1)
added.append(job.rid)
options = Options(on_error=OnError(max_retries=5))
job = queuer.add_job_with_options(options, my_task, "arg1", debug=True)
added.append(job.rid)
options = Options(on_error=OnError(max_retries=5, timeout=60.0))
job = queuer.add_job_with_options(options, my_task, param1, paramKeyed1="test")
added.append(job.rid)

# add_jobs
batch = [
    BatchJob(task=my_task, parameters=[1, "a"]),
    BatchJob(task=my_task, parameters=[2], parameters_keyed={"name": "b"}),
    BatchJob(task=my_task, parameters_keyed={"id": 3, "name": "c"}),
]
job_rids = queuer.add_jobs(batch)
added.extend(job_rids)

# Waiting and job queries
finished_job = queuer.wait_for_job_finished(job.rid, timeout_seconds=30.0)
job_info = queuer.get_job(job.rid)
archived_job = queuer.get_job_ended(job.rid)
running_jobs = queuer.get_jobs(status="RUNNING")
all_jobs = queuer.get_jobs()
worker = queuer.worker
worker_jobs = queuer.get_jobs_by_worker_rid(worker.rid)

for rid in added:
    done = queuer.wait_for_job_finished(rid, timeout_seconds=30.0)
    print(done.rid, done.status.value, json.dumps(done.results, sort_keys=True))

q.stop()
