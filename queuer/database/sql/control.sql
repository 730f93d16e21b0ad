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
