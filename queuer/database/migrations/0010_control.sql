-- Control from inside and outside a job.
-- Snoozes: times a task put its job back for later (no retry spent).

ALTER TABLE {schema}.job ADD COLUMN snoozes integer NOT NULL DEFAULT 0;
ALTER TABLE {schema}.job_archive ADD COLUMN snoozes integer NOT NULL DEFAULT 0;
