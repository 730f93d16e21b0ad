-- Control from inside and outside a job.
-- Snoozes: times a task put its job back for later (no retry spent).

ALTER TABLE {schema}.job ADD COLUMN snoozes integer NOT NULL DEFAULT 0;
ALTER TABLE {schema}.job_archive ADD COLUMN snoozes integer NOT NULL DEFAULT 0;

-- Tasks as operators steer them, on every worker: paused (no new job starts),
-- and limits that replace the ones in the code until reset.
CREATE TABLE {schema}.task_control (
    task_name           text        PRIMARY KEY,
    paused              boolean     NOT NULL DEFAULT false,
    limits_set          boolean     NOT NULL DEFAULT false,
    concurrency_limit   integer     CHECK (concurrency_limit > 0),
    requests_per_second double precision CHECK (requests_per_second > 0),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- Unique keys with a window (unique_for): the jobs with a key that ended lately.
CREATE INDEX job_archive_unique_key_idx ON {schema}.job_archive (unique_key, ended_at) WHERE unique_key IS NOT NULL;

-- Groups: jobs of one key (a tenant, a customer), claimed round-robin between
-- keys, with limits per key.
ALTER TABLE {schema}.job ADD COLUMN group_key text;
ALTER TABLE {schema}.job_archive ADD COLUMN group_key text;
CREATE INDEX job_group_claim_idx ON {schema}.job (task_name, group_key, priority DESC, scheduled_at, id)
    WHERE status IN ('QUEUED', 'SCHEDULED') AND group_key IS NOT NULL;
-- Rate tokens per (task, group): refilled and spent by the claim itself.
CREATE TABLE {schema}.group_rate (
    task_name  text             NOT NULL,
    group_key  text             NOT NULL,
    tokens     double precision NOT NULL,
    updated_at timestamptz      NOT NULL,
    PRIMARY KEY (task_name, group_key)
);
-- A task that a worker claims by group: its jobs added without a key get the key ''.
ALTER TABLE {schema}.task_control ADD COLUMN grouped boolean NOT NULL DEFAULT false;
