-- Workflows: jobs that wait for other jobs (see migration 0009 for the trigger
-- that releases and cancels dependents as their parents end), and the steps
-- of a job, kept with it across attempts.

-- name: insert_dependencies
-- The edges of jobs just added (their rids): one row per (parent, child).
INSERT INTO {schema}.job_dependency (parent_rid, child_id)
SELECT DISTINCT p.parent_rid, j.id
FROM {schema}.job AS j
CROSS JOIN LATERAL unnest(j.depends_on) AS p (parent_rid)
WHERE j.rid = ANY(%(rids)s::uuid[])
ON CONFLICT DO NOTHING

-- name: hold_parents
-- Parents added earlier, locked so that none of them can end unseen while
-- their new children are added: a parent that ends after this commits finds
-- the new edges. Returns the rids of those still active.
WITH wanted AS (
    SELECT unnest(%(rids)s::uuid[]) AS rid
), held AS (
    SELECT j.id, j.rid FROM {schema}.job AS j JOIN wanted USING (rid)
    ORDER BY j.id
    FOR NO KEY UPDATE OF j
), flagged AS (
    UPDATE {schema}.job AS j SET has_dependents = true
    FROM held WHERE j.id = held.id AND NOT j.has_dependents
    RETURNING j.id
)
SELECT coalesce(array_agg(held.rid), '{}') AS active, (SELECT count(*) FROM flagged) AS flagged FROM held

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
