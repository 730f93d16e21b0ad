-- Pausing tasks and changing their limits at runtime, for every worker. Each
-- change NOTIFYs ["control", NULL, task]: workers read the table again at once
-- (and once a second anyway).

-- name: task_controls
SELECT task_name, paused, limits_set, concurrency_limit, requests_per_second, updated_at
FROM {schema}.task_control ORDER BY task_name

-- name: set_task_paused
WITH changed AS (
    INSERT INTO {schema}.task_control AS c (task_name, paused) VALUES (%(task_name)s, %(paused)s)
    ON CONFLICT (task_name) DO UPDATE SET paused = excluded.paused, updated_at = now()
    RETURNING c.*
)
SELECT changed.*, pg_notify(%(channel)s, json_build_object(
    'j', json_build_array(json_build_array('control', NULL, task_name)))::text) AS notified
FROM changed

-- name: set_task_limits
WITH changed AS (
    INSERT INTO {schema}.task_control AS c (task_name, limits_set, concurrency_limit, requests_per_second)
    VALUES (%(task_name)s, %(limits_set)s, %(concurrency_limit)s, %(requests_per_second)s)
    ON CONFLICT (task_name) DO UPDATE
    SET limits_set = excluded.limits_set, concurrency_limit = excluded.concurrency_limit,
        requests_per_second = excluded.requests_per_second, updated_at = now()
    RETURNING c.*
)
SELECT changed.*, pg_notify(%(channel)s, json_build_object(
    'j', json_build_array(json_build_array('control', NULL, task_name)))::text) AS notified
FROM changed

-- name: mark_grouped_tasks
-- A worker claims these tasks by group: jobs of them added from now on without a
-- group key get the key '', and so do the ones already waiting.
WITH marked AS (
    INSERT INTO {schema}.task_control AS c (task_name, grouped)
    SELECT unnest(%(task_names)s::text[]), true
    ON CONFLICT (task_name) DO UPDATE SET grouped = true
    RETURNING c.task_name
)
UPDATE {schema}.job SET group_key = ''
WHERE task_name IN (SELECT task_name FROM marked) AND group_key IS NULL
  AND status IN ('QUEUED', 'SCHEDULED', 'WAITING')

-- name: key_grouped_jobs
-- Jobs just added by COPY to tasks claimed by group, without a key: the key ''.
UPDATE {schema}.job SET group_key = ''
WHERE rid = ANY(%(rids)s::uuid[]) AND group_key IS NULL AND task_name = ANY(%(task_names)s::text[])
