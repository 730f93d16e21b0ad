-- Flow controls shared by all workers: concurrency limits count RUNNING jobs
-- per task; rate limits keep a token bucket per task.

CREATE INDEX job_running_task_idx ON {schema}.job (task_name) WHERE status = 'RUNNING';

CREATE TABLE {schema}.task_rate (
    task_name   text             PRIMARY KEY,
    tokens      double precision NOT NULL,
    refilled_at timestamptz      NOT NULL
);
