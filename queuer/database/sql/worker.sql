-- Statements on the worker and master tables.

-- name: insert_worker
INSERT INTO {schema}.worker (rid, name, host, pid, max_concurrency, available_tasks, options, status)
VALUES (%(rid)s, %(name)s, %(host)s, %(pid)s, %(max_concurrency)s, %(available_tasks)s,
        %(options)s::jsonb, %(status)s)
RETURNING *;

-- name: activate_worker
-- start(): the row the constructor made (READY), or one a previous stop()
-- left, becomes RUNNING. A row pruned meanwhile is made again.
INSERT INTO {schema}.worker (rid, name, host, pid, max_concurrency, available_tasks, options, status)
VALUES (%(rid)s, %(name)s, %(host)s, %(pid)s, %(max_concurrency)s, %(available_tasks)s,
        %(options)s::jsonb, 'RUNNING')
ON CONFLICT (rid) DO UPDATE
SET status = 'RUNNING', stop_requested = NULL, host = excluded.host, pid = excluded.pid,
    available_tasks = excluded.available_tasks, max_concurrency = excluded.max_concurrency,
    heartbeat_at = now(), updated_at = now()
RETURNING *;

-- name: update_worker_tasks
UPDATE {schema}.worker
SET available_tasks = %(available_tasks)s, updated_at = now()
WHERE rid = %(rid)s
RETURNING *;

-- name: update_worker_next_interval
UPDATE {schema}.worker
SET available_next_interval = %(names)s, updated_at = now()
WHERE rid = %(rid)s
RETURNING *;

-- name: set_worker_status
UPDATE {schema}.worker
SET status = %(status)s, updated_at = now(), heartbeat_at = now()
WHERE rid = %(rid)s AND status <> 'DEAD'
  -- a stop request already shows STOPPED: winding down does not show STOPPING again
  AND NOT (status = 'STOPPED' AND %(status)s = 'STOPPING')
RETURNING *;

-- name: heartbeat
-- Returns no row when the master has declared this worker dead: the worker
-- must then treat every attempt it holds as lost.
UPDATE {schema}.worker
SET heartbeat_at = now(), updated_at = now()
WHERE rid = %(rid)s AND status <> 'DEAD'
RETURNING status, stop_requested;

-- name: request_worker_stop
-- The row shows the request at once (STOPPED for "now", STOPPING for
-- "graceful"); the worker itself is told by NOTIFY and by its heartbeat.
-- A worker that never started has nothing to finish: it is STOPPED either way.
WITH requested AS (
    UPDATE {schema}.worker
    SET stop_requested = %(mode)s,
        status = CASE WHEN %(mode)s = 'graceful' AND status <> 'READY' THEN 'STOPPING' ELSE 'STOPPED' END,
        updated_at = now()
    WHERE rid = %(rid)s AND status IN ('READY', 'RUNNING', 'STOPPING')
    RETURNING *
)
SELECT requested.*, pg_notify(%(channel)s, json_build_object(
           'j', json_build_array(json_build_array('stop', rid, %(mode)s)))::text) AS notified
FROM requested;

-- name: task_known
SELECT EXISTS (SELECT 1 FROM {schema}.worker WHERE %(task_name)s = ANY(available_tasks)) AS known;

-- name: get_worker
SELECT * FROM {schema}.worker WHERE rid = %(rid)s;

-- name: get_workers
SELECT * FROM {schema}.worker
WHERE (%(status)s::text IS NULL OR status = %(status)s)
ORDER BY id
LIMIT %(limit)s OFFSET %(offset)s;

-- name: acquire_master_lease
-- Take or renew the lease when it is ours or expired; no row means another
-- worker is master.
UPDATE {schema}.master
SET worker_rid = %(rid)s,
    lease_until = now() + make_interval(secs => %(lease_seconds)s),
    updated_at = now()
WHERE id = 1 AND (worker_rid = %(rid)s OR worker_rid IS NULL OR lease_until < now())
RETURNING worker_rid;

-- name: release_master_lease
UPDATE {schema}.master
SET worker_rid = NULL, lease_until = '-infinity', updated_at = now()
WHERE id = 1 AND worker_rid = %(rid)s;

-- name: mark_silent_workers_dead
UPDATE {schema}.worker
SET status = 'DEAD', updated_at = now()
WHERE status IN ('RUNNING', 'STOPPING')
  AND heartbeat_at < now() - make_interval(secs => %(dead_after_seconds)s)
RETURNING rid, name;

-- name: prune_workers
DELETE FROM {schema}.worker
WHERE status IN ('DEAD', 'STOPPED', 'READY')  -- READY: a producer that never stopped
  AND updated_at < now() - make_interval(secs => %(older_than_seconds)s);
