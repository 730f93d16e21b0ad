-- Statements on the schedule table (cron schedules).

-- name: upsert_schedule
-- Registering again keeps the pause flag and, when the cron and time zone are
-- unchanged, the pending tick: a tick missed while no worker ran still fires.
INSERT INTO {schema}.schedule AS s (name, cron, timezone, task_name, parameters, parameters_keyed, next_run_at)
VALUES (%(name)s, %(cron)s, %(timezone)s, %(task_name)s, %(parameters)s::json, %(parameters_keyed)s::json,
        %(next_run_at)s)
ON CONFLICT (name) DO UPDATE
SET task_name = excluded.task_name,
    parameters = excluded.parameters,
    parameters_keyed = excluded.parameters_keyed,
    next_run_at = CASE WHEN s.cron = excluded.cron AND s.timezone = excluded.timezone
                       THEN s.next_run_at ELSE excluded.next_run_at END,
    cron = excluded.cron,
    timezone = excluded.timezone,
    updated_at = now()
RETURNING *;

-- name: due_schedules
-- Locked until the caller's transaction ends: another worker skips them, and
-- sees the advanced next_run_at afterwards.
SELECT *, now() AS db_now FROM {schema}.schedule
WHERE NOT paused AND next_run_at <= now()
ORDER BY next_run_at
FOR UPDATE SKIP LOCKED;

-- name: advance_schedule
UPDATE {schema}.schedule
SET next_run_at = %(next_run_at)s, last_run_at = %(fired_at)s, updated_at = now()
WHERE name = %(name)s;

-- name: seconds_until_next_schedule
SELECT extract(epoch FROM min(next_run_at) - now()) AS wait_seconds
FROM {schema}.schedule WHERE NOT paused;

-- name: list_schedules
SELECT * FROM {schema}.schedule ORDER BY name;

-- name: get_schedule
SELECT *, now() AS db_now FROM {schema}.schedule WHERE name = %(name)s;

-- name: set_schedule_paused
UPDATE {schema}.schedule
SET paused = %(paused)s,
    next_run_at = coalesce(%(next_run_at)s, next_run_at),
    updated_at = now()
WHERE name = %(name)s
RETURNING *;

-- name: delete_schedule
DELETE FROM {schema}.schedule WHERE name = %(name)s RETURNING name;

-- name: db_now
SELECT now() AS db_now;
