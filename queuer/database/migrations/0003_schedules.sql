-- Cron schedules, stored so that whichever workers run, each tick fires once.
CREATE TABLE {schema}.schedule (
    name             text        PRIMARY KEY,
    cron             text        NOT NULL,
    timezone         text        NOT NULL DEFAULT 'UTC',
    task_name        text        NOT NULL,
    parameters       json        NOT NULL DEFAULT '[]',
    parameters_keyed json        NOT NULL DEFAULT '{}',
    paused           boolean     NOT NULL DEFAULT false,
    next_run_at      timestamptz NOT NULL,
    last_run_at      timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX schedule_due_idx ON {schema}.schedule (next_run_at) WHERE NOT paused;
