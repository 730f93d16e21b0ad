-- Statements of the web UI (queuer web): the pages' reads, its sessions and its audit log.
-- The pages read in a read-only transaction planned for the values at hand
-- (queuer.database.reading), so an optional filter is written as
-- "(%(x)s::type IS NULL OR column = %(x)s)": for a value the planner keeps only
-- "column = value", for NULL nothing, and the indexes serve each variant.

-- name: web_active_counts
SELECT task_name, status, count(*) AS n
FROM {schema}.job
GROUP BY task_name, status;

-- name: web_ended_counts
SELECT task_name, status, count(*) AS n
FROM {schema}.job_archive
WHERE ended_at >= now() - interval '1 hour'
GROUP BY task_name, status;

-- name: web_task_controls
-- Tasks that operators paused, or whose limits they replaced, at runtime (a
-- resumed task with its limits reset keeps a row that changes nothing).
SELECT task_name, paused, limits_set, concurrency_limit, requests_per_second, updated_at
FROM {schema}.task_control
WHERE paused OR limits_set
ORDER BY task_name
LIMIT %(limit)s;

-- name: web_task_control
-- One task's controls, for a list of its jobs.
SELECT task_name, paused, limits_set, concurrency_limit, requests_per_second, updated_at
FROM {schema}.task_control
WHERE task_name = %(task)s;

-- name: web_minutes_start
SELECT date_trunc('minute', now()) - interval '59 minutes' AS start;

-- name: web_minute_groups
-- The last hour in minutes 0..59 (59 is the current one), grouped so that Python
-- gets a few hundred rows whatever the traffic: per archived job of the hour, the
-- minute it ended in and its outcome, and for every job that waited in the hour
-- (was due and not started) the minute it became due and the minute it left (it
-- started, or ended unstarted; NULL while it still waits). A job waited from
-- greatest(created_at, scheduled_at). Only archive rows that ended within the
-- hour can have waited in it, so the ended_at index bounds the work. (date_part,
-- not extract: extract returns numeric, several times slower here.)
WITH win AS MATERIALIZED (
    SELECT date_part('epoch', date_trunc('minute', now()) - interval '59 minutes') AS start,
           date_part('epoch', now()) AS now
), spans AS (
    SELECT a.status,
           date_part('epoch', a.ended_at) AS ended,
           date_part('epoch', greatest(a.created_at, a.scheduled_at)) AS due,
           date_part('epoch', coalesce(a.started_at, a.ended_at)) AS left_at
    FROM {schema}.job_archive AS a
    WHERE a.ended_at >= to_timestamp((SELECT start FROM win))
    UNION ALL
    SELECT NULL, NULL,
           date_part('epoch', greatest(j.created_at, j.scheduled_at)),
           CASE WHEN j.status = 'RUNNING' THEN date_part('epoch', j.started_at) END
    FROM {schema}.job AS j
    -- A job waiting for its parents is not due: its release sets scheduled_at to when it became due.
    WHERE j.status <> 'WAITING'
), placed AS (
    SELECT s.status,
           floor((s.ended - w.start) / 60)::int AS ended_in,
           s.due <= w.now AND (s.left_at IS NULL OR (s.left_at > w.start AND s.left_at >= s.due)) AS waited,
           floor((greatest(s.due, w.start) - w.start) / 60)::int AS due_in,
           floor((s.left_at - w.start) / 60)::int AS left_in
    FROM spans AS s, win AS w
)
SELECT status, ended_in,
       CASE WHEN waited THEN due_in END AS due_in,
       CASE WHEN waited THEN left_in END AS left_in,
       count(*) AS n
FROM placed
WHERE status IS NOT NULL OR waited
GROUP BY 1, 2, 3, 4;

-- name: web_workers
-- Workers that can run jobs, and those that stopped or died in the last 15 minutes.
-- A session worker is alive while its liveness lock is held (see mark_dead_workers).
SELECT w.rid, w.name, w.host, w.pid, w.max_concurrency, w.status, w.liveness, w.stop_requested,
       w.heartbeat_at, w.created_at,
       extract(epoch FROM now() - w.heartbeat_at)::double precision AS silent_seconds,
       (SELECT count(*) FROM {schema}.job AS j
        WHERE j.worker_rid = w.rid AND j.status = 'RUNNING') AS running,
       w.liveness = 'session' AND EXISTS (
           SELECT 1 FROM pg_locks AS l
           WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
             AND l.classid = %(lock_space)s::bigint::oid
             AND l.objid = (w.id %% 2147483648)::oid) AS session_held
FROM {schema}.worker AS w
WHERE w.status IN ('RUNNING', 'STOPPING')
   OR (w.status IN ('STOPPED', 'DEAD') AND w.updated_at > now() - interval '15 minutes')
ORDER BY w.status IN ('STOPPED', 'DEAD'), w.name, w.id
LIMIT 200;

-- name: web_archive_estimate
-- The planner's estimate of the archive's size (the parameter table is its qualified name).
-- The archive is partitioned: its estimate is the sum of its partitions' (a parent's
-- reltuples is never kept); -1 (count instead) while those that hold anything were
-- never analyzed.
SELECT CASE WHEN sum(greatest(c.reltuples, 0)) = 0 AND bool_or(c.reltuples < 0) THEN -1
            ELSE sum(greatest(c.reltuples, 0)) END::bigint AS estimate
FROM pg_class AS c
WHERE c.oid = to_regclass(%(table)s) AND c.relkind <> 'p'
   OR c.oid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = to_regclass(%(table)s));

-- name: web_archive_small_count
-- Before the first ANALYZE: a count that stops at a few rows (the parameter limit).
SELECT count(*) AS n FROM (SELECT 1 FROM {schema}.job_archive LIMIT %(limit)s) AS few;

-- name: _web_list_columns
-- Sizes read from the values' headers, not the values (see SUSPECT_SIZE in
-- queuer.web.reads): json's text length is in its header even when compressed; a
-- compressed jsonb has a stored size that may be small.
rid, task_name, status, priority, attempts, max_attempts, snoozes, created_at, scheduled_at, started_at,
worker_rid, left(error, 300) AS error, id,
octet_length(parameters::text) + octet_length(parameters_keyed::text) AS arguments_size,
CASE WHEN pg_column_compression(results) IS NOT NULL THEN 2147483647
     ELSE pg_column_size(results) END AS result_size

-- name: _web_active_filter
-- A list's filter over the queue, by created_at; the next page starts below before_id.
status = ANY(%(statuses)s)
AND (%(task)s::text IS NULL OR task_name = %(task)s)
AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s)
AND (%(until)s::timestamptz IS NULL OR created_at < %(until)s)
AND (%(rid_low)s::uuid IS NULL OR rid BETWEEN %(rid_low)s AND %(rid_high)s)
AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s)

-- name: _web_ended_filter
-- A list's filter over the archive, by ended_at; the next page starts just after
-- (before_at, before_id), whose first condition alone the ended_at index answers.
status = ANY(%(statuses)s)
AND (%(task)s::text IS NULL OR task_name = %(task)s)
AND (%(since)s::timestamptz IS NULL OR ended_at >= %(since)s)
AND (%(until)s::timestamptz IS NULL OR ended_at < %(until)s)
AND (%(rid_low)s::uuid IS NULL OR rid BETWEEN %(rid_low)s AND %(rid_high)s)
AND (%(before_at)s::timestamptz IS NULL
     OR ended_at <= %(before_at)s AND (ended_at < %(before_at)s OR id < %(before_id)s))

-- name: web_jobs_active
-- One page of the queue, newest first: ids grow with insertion, so on the primary key.
SELECT {_web_list_columns}, NULL::timestamptz AS ended_at
FROM {schema}.job
WHERE {_web_active_filter}
ORDER BY id DESC
LIMIT %(limit)s;

-- name: web_jobs_ended
SELECT {_web_list_columns}, ended_at
FROM {schema}.job_archive
WHERE {_web_ended_filter}
ORDER BY ended_at DESC, id DESC
LIMIT %(limit)s;

-- name: web_selection_active
-- The jobs a bulk action covers: the rows of the list, without the list's columns.
SELECT rid, id, NULL::timestamptz AS ended_at
FROM {schema}.job
WHERE {_web_active_filter}
ORDER BY id DESC
LIMIT %(limit)s;

-- name: web_selection_ended
SELECT rid, id, ended_at
FROM {schema}.job_archive
WHERE {_web_ended_filter}
ORDER BY ended_at DESC, id DESC
LIMIT %(limit)s;

-- name: web_payloads
SELECT rid, parameters, parameters_keyed, results FROM {schema}.job WHERE rid = ANY(%(rids)s)
UNION ALL
SELECT rid, parameters, parameters_keyed, results FROM {schema}.job_archive WHERE rid = ANY(%(rids)s);

-- name: web_job_active
SELECT *, NULL::timestamptz AS ended_at FROM {schema}.job WHERE rid = %(rid)s;

-- name: web_job_ended
SELECT * FROM {schema}.job_archive WHERE rid = %(rid)s;

-- name: web_jobs_brief
-- The task and status of a job's parents and dependents, for its page's links.
SELECT rid, task_name, status FROM {schema}.job WHERE rid = ANY(%(rids)s::uuid[])
UNION ALL
SELECT rid, task_name, status FROM {schema}.job_archive WHERE rid = ANY(%(rids)s::uuid[]);

-- name: web_snapshot
-- A workflow's page reads its counts and its jobs in one snapshot (a job that ends
-- between the two statements would otherwise be counted in one status and drawn in another).
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ;

-- name: web_workflow_counts
-- Its jobs per status, active and ended, on both tables' workflow_id indexes.
SELECT status, count(*) AS n FROM (
    SELECT status FROM {schema}.job WHERE workflow_id = %(workflow_id)s
    UNION ALL
    SELECT status FROM {schema}.job_archive WHERE workflow_id = %(workflow_id)s
) AS jobs
GROUP BY status;

-- name: web_workflow_jobs
-- Its jobs in the order they were added (a job keeps its id in the archive), at most
-- the parameter limit: what the graph and its table show, never the payloads.
SELECT rid, id, task_name, status, depends_on, attempts, max_attempts, left(error, 300) AS error
FROM {schema}.job WHERE workflow_id = %(workflow_id)s
UNION ALL
SELECT rid, id, task_name, status, depends_on, attempts, max_attempts, left(error, 300) AS error
FROM {schema}.job_archive WHERE workflow_id = %(workflow_id)s
ORDER BY id
LIMIT %(limit)s;

-- name: web_workflow_exists
SELECT EXISTS (SELECT 1 FROM {schema}.job WHERE workflow_id = %(workflow_id)s)
    OR EXISTS (SELECT 1 FROM {schema}.job_archive WHERE workflow_id = %(workflow_id)s) AS found;

-- name: web_worker_by_rid
SELECT rid, name, host, pid, status FROM {schema}.worker WHERE rid = %(rid)s;

-- name: web_session_state
SELECT (SELECT session_epoch FROM {schema}.web_state) AS epoch,
       EXISTS (SELECT 1 FROM {schema}.web_session_revoked WHERE session_id = %(id)s) AS revoked;

-- name: web_session_epoch
SELECT session_epoch FROM {schema}.web_state;

-- name: web_revoke_session
-- Signed-out sessions past their expiry go at the same time.
WITH gone AS (DELETE FROM {schema}.web_session_revoked WHERE expires_at < now() - interval '1 hour')
INSERT INTO {schema}.web_session_revoked (session_id, expires_at)
VALUES (%(id)s, %(expires)s)
ON CONFLICT (session_id) DO NOTHING;

-- name: web_bump_epoch
-- Every session ends: no sign-out of an older epoch needs keeping.
WITH gone AS (DELETE FROM {schema}.web_session_revoked)
UPDATE {schema}.web_state SET session_epoch = session_epoch + 1, epoch_changed_at = now()
RETURNING session_epoch;

-- name: web_record_audit
INSERT INTO {schema}.web_audit (client, credential, action, target, rids, outcome)
VALUES (%(client)s, %(credential)s, %(action)s, %(target)s, %(rids)s, %(outcome)s);

-- name: web_audit_page
-- Newest first by keyset on id: the next page starts below before_id.
SELECT id, at, client, credential, action, target, cardinality(rids) AS rid_count, rids[1:10] AS rids, outcome,
       now() AS now
FROM {schema}.web_audit
WHERE (%(action)s::text IS NULL OR action = %(action)s)
  AND (%(rid)s::uuid IS NULL OR rids @> ARRAY[%(rid)s::uuid])
  AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s)
ORDER BY id DESC
LIMIT %(limit)s;

-- name: web_current_role
SELECT current_user AS role;
