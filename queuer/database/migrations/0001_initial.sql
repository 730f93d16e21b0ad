-- queuer schema, version 1.
-- {schema} is replaced by the quoted, validated schema name.
-- Every timestamp is timestamptz and every comparison uses the database clock.
-- Arguments and results are json, not jsonb: json keeps the text it was given,
-- so every value comes back exactly (jsonb would turn 2.5e16 into an integer).

CREATE TABLE {schema}.job (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rid              uuid        NOT NULL UNIQUE,
    task_name        text        NOT NULL,
    parameters       json        NOT NULL DEFAULT '[]',
    parameters_keyed json        NOT NULL DEFAULT '{}',
    options          jsonb,
    priority         integer     NOT NULL DEFAULT 0,
    status           text        NOT NULL DEFAULT 'QUEUED'
                     CHECK (status IN ('QUEUED', 'SCHEDULED', 'RUNNING')),
    scheduled_at     timestamptz NOT NULL DEFAULT now(),  -- not claimable before this
    started_at       timestamptz,
    -- The fencing identity of an attempt is (worker_rid, attempts): every
    -- outcome is written only where both still match.
    worker_rid       uuid,
    attempts         integer     NOT NULL DEFAULT 0,
    max_attempts     integer     NOT NULL DEFAULT 1 CHECK (max_attempts >= 1),
    timeout_seconds  double precision,
    cancel_requested boolean     NOT NULL DEFAULT false,
    schedule_count   integer     NOT NULL DEFAULT 0,
    unique_key       text,
    origin_rid       uuid,
    results          jsonb,
    error            text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- The claim reads only claimable rows, in claim order: highest priority
-- first, then earliest due, then insertion order.
CREATE INDEX job_claim_idx ON {schema}.job (priority DESC, scheduled_at, id)
    WHERE status IN ('QUEUED', 'SCHEDULED');
-- Serves "when is the next scheduled job due" for the poller's sleep.
CREATE INDEX job_scheduled_idx ON {schema}.job (scheduled_at) WHERE status = 'SCHEDULED';
CREATE INDEX job_running_worker_idx ON {schema}.job (worker_rid) WHERE status = 'RUNNING';
-- While a job with a unique key is queued or running, no other may be added.
CREATE UNIQUE INDEX job_unique_key_idx ON {schema}.job (unique_key) WHERE unique_key IS NOT NULL;

CREATE TABLE {schema}.job_archive (
    id               bigint      NOT NULL,
    rid              uuid        NOT NULL,
    task_name        text        NOT NULL,
    parameters       json        NOT NULL DEFAULT '[]',
    parameters_keyed json        NOT NULL DEFAULT '{}',
    options          jsonb,
    priority         integer     NOT NULL DEFAULT 0,
    status           text        NOT NULL CHECK (status IN ('SUCCEEDED', 'FAILED', 'CANCELLED')),
    scheduled_at     timestamptz NOT NULL,
    started_at       timestamptz,
    worker_rid       uuid,
    attempts         integer     NOT NULL DEFAULT 0,
    max_attempts     integer     NOT NULL DEFAULT 1,
    timeout_seconds  double precision,
    schedule_count   integer     NOT NULL DEFAULT 0,
    unique_key       text,
    origin_rid       uuid,
    results          jsonb,
    error            text,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    ended_at         timestamptz NOT NULL DEFAULT now()
);
-- A job is archived exactly once: a second archive of the same rid is a bug
-- and must fail loudly rather than hide.
CREATE UNIQUE INDEX job_archive_rid_idx ON {schema}.job_archive (rid);
CREATE INDEX job_archive_ended_at_idx ON {schema}.job_archive (ended_at);
CREATE INDEX job_archive_task_status_idx ON {schema}.job_archive (task_name, status);

CREATE TABLE {schema}.worker (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rid              uuid        NOT NULL UNIQUE,
    name             text        NOT NULL,
    host             text,
    pid              integer,
    max_concurrency  integer     NOT NULL CHECK (max_concurrency > 0),
    available_tasks  text[]      NOT NULL DEFAULT '{}',
    options          jsonb,
    status           text        NOT NULL DEFAULT 'READY'
                     CHECK (status IN ('READY', 'RUNNING', 'STOPPING', 'STOPPED', 'DEAD')),
    stop_requested   text        CHECK (stop_requested IN ('graceful', 'now')),
    heartbeat_at     timestamptz NOT NULL DEFAULT now(),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX worker_status_heartbeat_idx ON {schema}.worker (status, heartbeat_at);

-- One leased row: the worker that holds an unexpired lease is the master.
CREATE TABLE {schema}.master (
    id          integer     PRIMARY KEY CHECK (id = 1),
    worker_rid  uuid,
    lease_until timestamptz NOT NULL DEFAULT '-infinity',
    updated_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO {schema}.master (id) VALUES (1);
