-- The test kit's statements (queuer.testing.drain).

-- name: testing_ended_since
-- Jobs ended since a moment, for a drain that let the queuer's own worker run them.
SELECT rid FROM {schema}.job_archive WHERE ended_at >= %(since)s ORDER BY ended_at, id

-- name: testing_due_or_running
SELECT count(*) AS n FROM {schema}.job
WHERE task_name = ANY(%(tasks)s) AND (status = 'RUNNING' OR scheduled_at <= now())

-- name: testing_schedule_now
UPDATE {schema}.job SET scheduled_at = now(), status = 'QUEUED'
WHERE status = 'SCHEDULED' AND task_name = ANY(%(tasks)s)
