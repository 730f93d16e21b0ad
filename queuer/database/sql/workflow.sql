-- Workflows: jobs that wait for other jobs (see migration 0009 for the trigger
-- that releases and cancels dependents as their parents end), and the steps
-- of a job, kept with it across attempts.

-- name: hold_parents
-- Parents added earlier, given their new dependents and locked, so that none of
-- them can end unseen while its children are added: a parent that ends after
-- this commits finds them. Returns the rids of those still active.
WITH wanted AS (
    SELECT parent, array_agg(child) AS children
    FROM unnest(%(parents)s::uuid[], %(children)s::uuid[]) AS edge (parent, child)
    GROUP BY parent
), held AS (
    SELECT j.id, w.children FROM {schema}.job AS j JOIN wanted AS w ON w.parent = j.rid
    ORDER BY j.id
    FOR NO KEY UPDATE OF j
), given AS (
    UPDATE {schema}.job AS j SET dependents = coalesce(j.dependents, '{}') || held.children
    FROM held WHERE j.id = held.id
    RETURNING j.rid
)
SELECT coalesce(array_agg(rid), '{}') AS active FROM given

-- name: ended_parents
SELECT rid, status FROM {schema}.job_archive WHERE rid = ANY(%(rids)s::uuid[])

-- name: count_down_children
-- Children of parents that had already ended when they were added: those parents
-- count as ended at once (the last one releases the child, as the trigger does).
WITH released AS (
    UPDATE {schema}.job AS j
    SET waiting_for = j.waiting_for - s.n,
        status = CASE WHEN j.waiting_for - s.n > 0 THEN 'WAITING'
                      WHEN j.scheduled_at > now() THEN 'SCHEDULED' ELSE 'QUEUED' END,
        scheduled_at = CASE WHEN j.waiting_for - s.n > 0 THEN j.scheduled_at ELSE greatest(j.scheduled_at, now()) END,
        updated_at = now()
    FROM unnest(%(rids)s::uuid[], %(ended)s::integer[]) AS s (rid, n)
    WHERE j.rid = s.rid AND j.status = 'WAITING'
    RETURNING j.task_name, j.status
), items AS (
    SELECT json_build_array('insert', NULL, task_name) AS item
    FROM (SELECT DISTINCT task_name FROM released WHERE status <> 'WAITING') AS due
), notified AS (
    {notify_items}
)
SELECT (SELECT count(*) FROM released) AS counted, (SELECT count(*) FROM notified) AS notified

-- name: dependencies_of
-- The ended parents of a job (a job runs only once every parent has ended).
SELECT * FROM {schema}.job_archive WHERE rid = ANY(%(rids)s::uuid[])

-- name: workflow_active_jobs
SELECT * FROM {schema}.job WHERE workflow_id = %(workflow_id)s ORDER BY id

-- name: workflow_ended_jobs
SELECT * FROM {schema}.job_archive WHERE workflow_id = %(workflow_id)s ORDER BY id

-- name: workflow_active_rids
SELECT rid FROM {schema}.job WHERE workflow_id = %(workflow_id)s

-- name: save_step
-- A step's result, kept with the job for its later attempts; fenced like an outcome.
UPDATE {schema}.job
SET steps = coalesce(steps, '{}'::jsonb) || jsonb_build_object(%(name)s::text, %(value)s::jsonb)
WHERE id = %(id)s AND attempts = %(attempt)s AND worker_rid = %(worker_rid)s
RETURNING id
