-- The benchmark's statements (queuer.tools.bench, `queuer bench`), run in its own throwaway schema.

-- name: bench_drop_schema
-- A fresh start for each measurement: the bench's schema and everything in it.
DROP SCHEMA IF EXISTS {schema} CASCADE

-- name: bench_vacuum_job
-- Fresh statistics and visibility map for the job table (autocommit: VACUUM runs outside a transaction).
VACUUM ANALYZE {schema}.job

-- name: bench_vacuum_job_archive
VACUUM ANALYZE {schema}.job_archive

-- name: bench_now
SELECT now() AS now

-- name: bench_archived_since
-- Only rows archived during the run, by the ended_at index (not a count of the whole archive).
SELECT count(*) AS n FROM {schema}.job_archive WHERE ended_at >= %(since)s

-- name: bench_seconds_to_last_end
-- From "since" to the end of the last job archived after it, on the server's clock.
SELECT extract(epoch FROM max(ended_at) - %(since)s) AS seconds FROM {schema}.job_archive WHERE ended_at >= %(since)s

-- name: bench_partitions_since
-- Daily archive partitions back to some days ago, for archived jobs made up with past end times.
SELECT * FROM {schema}.archive_maintain(86400, 2, NULL, now() - make_interval(days => %(days)s))

-- name: bench_release_held
-- Gives every queued job (filled under a task no worker has) to one task at once.
UPDATE {schema}.job SET task_name = %(task)s

-- name: bench_notify
-- Wakes the workers, as an insert's notification does.
SELECT pg_notify(%(channel)s, %(payload)s)

-- name: bench_ceiling_claim
-- The ceiling in plain SQL: claim 100 due jobs with SKIP LOCKED and mark them running.
WITH c AS (SELECT id FROM {schema}.job WHERE status IN ('QUEUED', 'SCHEDULED')
           AND scheduled_at <= now() ORDER BY priority DESC, scheduled_at, id LIMIT 100 FOR UPDATE SKIP LOCKED)
UPDATE {schema}.job AS j SET status = 'RUNNING', attempts = j.attempts + 1, started_at = now()
FROM c WHERE j.id = c.id RETURNING j.id

-- name: bench_ceiling_move
-- The ceiling in plain SQL: move the claimed jobs from job to job_archive as succeeded.
WITH gone AS (DELETE FROM {schema}.job WHERE id = ANY(%(ids)s) RETURNING *)
INSERT INTO {schema}.job_archive (id, rid, task_name, parameters, parameters_keyed, priority,
                                  scheduled_at, started_at, attempts, created_at, status)
SELECT id, rid, task_name, parameters, parameters_keyed, priority, scheduled_at, started_at,
       attempts, created_at, 'SUCCEEDED' FROM gone

-- name: bench_scale_fill_archive
-- Succeeded jobs that ended a day ago (negative ids: they never were in job).
INSERT INTO {schema}.job_archive (id, rid, task_name, status, scheduled_at, created_at, ended_at)
SELECT -g, gen_random_uuid(), 'noop', 'SUCCEEDED', now(), now(), now() - interval '1 day'
FROM generate_series(1, %(rows)s) AS g

-- name: bench_scale_fill_job
INSERT INTO {schema}.job (rid, task_name) SELECT gen_random_uuid(), 'noop'
FROM generate_series(1, %(rows)s)

-- name: bench_aging_fill_archive
-- Archived jobs first..last (ids negated), their ends spread evenly over the day days_ago days ago.
-- The casts: two small ints are sent as smallint, for which generate_series has no single candidate.
INSERT INTO {schema}.job_archive (id, rid, task_name, status, scheduled_at, created_at, ended_at)
SELECT -g, gen_random_uuid(), 'noop', 'SUCCEEDED', e.at, e.at, e.at
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g
CROSS JOIN LATERAL (SELECT date_trunc('day', now()) - make_interval(days => %(days_ago)s)
                           + make_interval(secs => 86399.0 * (g - %(first)s) / %(count)s) AS at) AS e

-- name: bench_oldest_partition
-- The oldest dated archive partition (not the one that took over an earlier archive, from -infinity).
SELECT name, lower_bound, upper_bound FROM {schema}.archive_partition
WHERE lower_bound > '-infinity' ORDER BY lower_bound LIMIT 1

-- name: bench_archived_between
-- The rows of one archive partition, by its bounds through the parent (pruned to that partition).
SELECT count(*) AS n FROM {schema}.job_archive WHERE ended_at >= %(lower)s AND ended_at < %(upper)s

-- name: bench_seconds_since
SELECT extract(epoch FROM now() - %(at)s::timestamptz) AS s

-- name: bench_archive_prune
-- Retention as the master runs it: drop every partition that ended more than keep seconds ago.
SELECT dropped FROM {schema}.archive_maintain(86400, 2, %(keep)s)

-- name: bench_repeatable_read
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ

-- name: bench_take_snapshot
-- Any query: the REPEATABLE READ snapshot is taken, and vacuum's horizon stops at it.
SELECT count(*) FROM pg_class

-- name: bench_job_table_size
-- The job table with its indexes and TOAST, in bytes.
SELECT pg_total_relation_size('{schema}.job') AS size

-- name: bench_web_fill_archive
-- Archived jobs of the 8 tasks in turn, spread evenly over the last days:
-- 94 percent succeeded, 5 failed, 1 cancelled.
INSERT INTO {schema}.job_archive (id, rid, task_name, status, scheduled_at, started_at,
                                  created_at, ended_at, attempts, error)
SELECT -g, gen_random_uuid(), (%(tasks)s::text[])[1 + g %% 8],
       CASE WHEN g %% 100 < 94 THEN 'SUCCEEDED' WHEN g %% 100 < 99 THEN 'FAILED' ELSE 'CANCELLED' END,
       e.at - interval '3 seconds', e.at - interval '1 second', e.at - interval '3 seconds', e.at, 1,
       CASE WHEN g %% 100 BETWEEN 94 AND 98 THEN 'RuntimeError: upstream timed out' END
FROM generate_series(1, %(rows)s) AS g
CROSS JOIN LATERAL (SELECT now() - make_interval(secs => %(days)s * 86400.0 * g / %(rows)s) AS at) AS e

-- name: bench_web_page_100_row
-- The last row of the 100th page of ended jobs (50 a page): the cursor that page's link carries.
SELECT ended_at, id, rid FROM {schema}.job_archive ORDER BY ended_at DESC, id DESC
OFFSET 4999 LIMIT 1

-- name: bench_web_failed_rid
SELECT rid FROM {schema}.job_archive WHERE status = 'FAILED' LIMIT 1
