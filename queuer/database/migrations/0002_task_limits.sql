-- Flow controls shared by all workers: concurrency limits count RUNNING jobs
-- per task; rate limits keep a token bucket per task; serial keys.

CREATE INDEX job_running_task_idx ON {schema}.job (task_name) WHERE status = 'RUNNING';

-- Serialized dispatch per key: at most one RUNNING job per serial_key, enforced
-- by the index itself (the claim also skips keys that are running).
ALTER TABLE {schema}.job ADD COLUMN serial_key text;
CREATE UNIQUE INDEX job_running_serial_key_idx ON {schema}.job (serial_key)
    WHERE status = 'RUNNING' AND serial_key IS NOT NULL;

CREATE TABLE {schema}.task_rate (
    task_name   text             PRIMARY KEY,
    tokens      double precision NOT NULL,
    refilled_at timestamptz      NOT NULL
);
