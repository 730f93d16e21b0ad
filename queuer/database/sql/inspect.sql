-- What `queuer dashboard` reads each frame besides the queue's depth
-- (count_jobs_by_task_and_status): the last minute, the last hour, the workers. Read-only, on the queue tables' indexes or small tables.

-- name: count_ended_last_minute_by_task
-- The throughput: jobs that ended in the last minute (cancelled ones did no work).
SELECT task_name, status, count(*)
FROM {schema}.job_archive
WHERE ended_at > now() - interval '1 minute' AND status <> 'CANCELLED'
GROUP BY 1, 2;

-- name: count_failed_last_hour
SELECT count(*)
FROM {schema}.job_archive
WHERE status = 'FAILED' AND ended_at > now() - interval '1 hour';

-- name: list_recent_workers
-- Workers that are up, or went away in the last five minutes, with the jobs
-- each is running and the seconds since its heartbeat.
SELECT w.name, w.status,
       (SELECT count(*) FROM {schema}.job AS j WHERE j.worker_rid = w.rid AND j.status = 'RUNNING'),
       extract(epoch FROM now() - w.heartbeat_at)
FROM {schema}.worker AS w
WHERE w.status IN ('READY', 'RUNNING', 'STOPPING') OR w.updated_at > now() - interval '5 minutes'
ORDER BY w.name;
