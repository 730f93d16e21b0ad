-- A crash is not a failure. "failures" counts attempts that raised or timed
-- out (spent from OnError.max_retries); "rescues" counts the times a job went
-- back to the queue because its worker died or stopped holding it; "crashes"
-- counts the rescues charged to the job (bounded by crash_budget).
-- Blame needs proof. A job that has been rescued records its start in
-- "confirmed_at" before it runs. A job that was running when its worker died,
-- beside other jobs, becomes a "suspect": it runs alone on an idle worker from
-- then on ("confirmed_alone"), and only a crash while it runs alone is charged.
ALTER TABLE {schema}.job ADD COLUMN failures integer NOT NULL DEFAULT 0;
ALTER TABLE {schema}.job ADD COLUMN rescues integer NOT NULL DEFAULT 0;
ALTER TABLE {schema}.job ADD COLUMN crashes integer NOT NULL DEFAULT 0;
ALTER TABLE {schema}.job ADD COLUMN crash_budget integer CHECK (crash_budget >= 1);
ALTER TABLE {schema}.job ADD COLUMN confirmed_at timestamptz;
ALTER TABLE {schema}.job ADD COLUMN confirmed_alone boolean NOT NULL DEFAULT false;
ALTER TABLE {schema}.job ADD COLUMN suspect boolean NOT NULL DEFAULT false;
-- Suspects are claimed one at a time by idle workers, in claim order.
CREATE INDEX job_suspect_idx ON {schema}.job (priority DESC, scheduled_at, id)
    WHERE suspect AND status IN ('QUEUED', 'SCHEDULED');
ALTER TABLE {schema}.job_archive ADD COLUMN failures integer NOT NULL DEFAULT 0;
ALTER TABLE {schema}.job_archive ADD COLUMN rescues integer NOT NULL DEFAULT 0;
ALTER TABLE {schema}.job_archive ADD COLUMN crashes integer NOT NULL DEFAULT 0;

-- How a worker's liveness is decided: "session" workers hold an advisory lock
-- on their own long-lived connection (free the moment the process or the
-- connection is gone); "heartbeat" workers (no session, e.g. behind a
-- transaction pooler) are judged by their heartbeat alone. unlocked_since is
-- when the master first saw a session worker's lock free.
ALTER TABLE {schema}.worker ADD COLUMN liveness text NOT NULL DEFAULT 'heartbeat'
    CHECK (liveness IN ('session', 'heartbeat'));
ALTER TABLE {schema}.worker ADD COLUMN unlocked_since timestamptz;
