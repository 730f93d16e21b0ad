-- Statements on the worker and master tables.

-- name: insert_worker
INSERT INTO {schema}.worker (rid, name, host, pid, max_concurrency, available_tasks, options, status)
VALUES (%(rid)s, %(name)s, %(host)s, %(pid)s, %(max_concurrency)s, %(available_tasks)s,
        %(options)s::jsonb, %(status)s)
RETURNING *;

-- name: activate_worker
-- start(): the row the constructor made (READY), or one a previous stop()
-- left, becomes RUNNING. A row pruned meanwhile is made again.
INSERT INTO {schema}.worker (rid, name, host, pid, max_concurrency, available_tasks, options, status, liveness)
VALUES (%(rid)s, %(name)s, %(host)s, %(pid)s, %(max_concurrency)s, %(available_tasks)s,
        %(options)s::jsonb, 'RUNNING', %(liveness)s)
ON CONFLICT (rid) DO UPDATE
SET status = 'RUNNING', stop_requested = NULL, host = excluded.host, pid = excluded.pid,
    liveness = %(liveness)s, unlocked_since = NULL,
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
-- Take or renew the lease when it is ours, expired, or held by a worker that
-- is gone: DEAD, or a session worker whose liveness lock is free (a killed
-- master is replaced within one tick, not after its lease). No row means
-- another worker is master.
UPDATE {schema}.master AS m
SET worker_rid = %(rid)s,
    lease_until = now() + make_interval(secs => %(lease_seconds)s),
    updated_at = now()
WHERE m.id = 1
  AND (m.worker_rid = %(rid)s OR m.worker_rid IS NULL OR m.lease_until < now()
       OR NOT EXISTS (
           SELECT 1 FROM {schema}.worker AS w
           WHERE w.rid = m.worker_rid AND w.status <> 'DEAD'
             AND (w.liveness <> 'session' OR EXISTS (
                     SELECT 1 FROM pg_locks AS l
                     WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
                       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                       AND l.classid = %(lock_space)s::bigint::oid
                       AND l.objid = (w.id %% 2147483648)::oid))))
RETURNING worker_rid;

-- name: release_master_lease
UPDATE {schema}.master
SET worker_rid = NULL, lease_until = '-infinity', updated_at = now()
WHERE id = 1 AND worker_rid = %(rid)s;

-- name: mark_dead_workers
-- The master's liveness pass. A session worker holds an advisory lock on its
-- own connection, which PostgreSQL frees the moment the process or the
-- connection is gone; it is dead once the lock has been free, and the worker
-- silent, for longer than the grace (a live worker whose session dropped
-- heartbeats fast until it is back). A session worker that holds its lock is
-- alive however long it is silent (a task holding the GIL), up to hung_after.
-- A heartbeat worker is dead after dead_after of silence. Silence is counted
-- only from the server's start and from when the master could reach it, and
-- for restart_grace after a server restart no lock of a worker registered
-- before it counts as lost: an outage is nobody's fault. Also STOPPED rows still holding RUNNING jobs (a worker
-- that died while stopping). Rows change only when something changed.
WITH server AS (
    SELECT now() - pg_postmaster_start_time() > make_interval(secs => %(restart_grace)s) AS settled,
           greatest(pg_postmaster_start_time(), %(reachable_since)s::timestamptz) AS silence_from,
           (SELECT oid FROM pg_database WHERE datname = current_database()) AS db
), seen AS (
    SELECT w.id, w.liveness, w.unlocked_since,
           -- registered on this server instance: it is not reconnecting after a restart
           w.created_at > pg_postmaster_start_time() AS born_here,
           greatest(w.heartbeat_at, s.silence_from) AS heard_at,
           w.liveness = 'session' AND EXISTS (
               SELECT 1 FROM pg_locks AS l
               WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 AND l.database = s.db
                 AND l.classid = %(lock_space)s::bigint::oid
                 AND l.objid = (w.id %% 2147483648)::oid) AS locked
    FROM {schema}.worker AS w, server AS s
    WHERE w.status IN ('RUNNING', 'STOPPING')
       OR (w.status = 'STOPPED' AND EXISTS (SELECT 1 FROM {schema}.job AS j
                                            WHERE j.worker_rid = w.rid AND j.status = 'RUNNING'))
), judged AS (
    SELECT seen.id, seen.liveness, seen.locked,
           CASE WHEN seen.liveness = 'session' THEN
                    (NOT seen.locked AND (s.settled OR seen.born_here)
                     AND seen.unlocked_since < now() - make_interval(secs => %(grace)s)
                     AND seen.heard_at < now() - make_interval(secs => %(grace)s))
                    OR seen.heard_at < now() - make_interval(secs => %(hung_after)s)
                ELSE seen.heard_at < now() - make_interval(secs => %(dead_after)s)
           END AS dead
    FROM seen, server AS s
)
UPDATE {schema}.worker AS w
SET status = CASE WHEN j.dead THEN 'DEAD' ELSE w.status END,
    unlocked_since = CASE WHEN j.locked OR j.liveness <> 'session' THEN NULL
                          ELSE coalesce(w.unlocked_since, now()) END,
    updated_at = CASE WHEN j.dead THEN now() ELSE w.updated_at END
FROM judged AS j
WHERE w.id = j.id
  AND (j.dead OR (j.liveness = 'session' AND j.locked = (w.unlocked_since IS NOT NULL)))
RETURNING w.rid, w.name, j.dead, w.liveness;

-- name: prune_workers
DELETE FROM {schema}.worker
WHERE status IN ('DEAD', 'STOPPED', 'READY')  -- READY: a producer that never stopped
  AND updated_at < now() - make_interval(secs => %(older_than_seconds)s);

-- name: worker_health
-- `queuer health`: the workers of one host, newest first, with what tells
-- whether each is alive (see mark_dead_workers).
SELECT w.rid, w.name, w.pid, w.status, w.liveness,
       extract(epoch FROM now() - w.heartbeat_at)::double precision AS silent_seconds,
       EXISTS (SELECT 1 FROM pg_locks AS l
               WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
                 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                 AND l.classid = %(lock_space)s::bigint::oid
                 AND l.objid = (w.id %% 2147483648)::oid) AS locked
FROM {schema}.worker AS w
WHERE w.host = %(host)s AND (%(name)s::text IS NULL OR w.name = %(name)s) AND w.status <> 'READY'
ORDER BY w.id DESC
LIMIT 20;

-- name: count_workers_by_status
SELECT status, count(*) AS n FROM {schema}.worker GROUP BY status ORDER BY status

-- name: liveness_try_lock
-- The worker's liveness lock: a session lock that PostgreSQL frees when the session ends.
SELECT pg_try_advisory_lock(%(space)s, %(key)s) AS locked

-- name: liveness_unlock
SELECT pg_advisory_unlock(%(space)s, %(key)s)

-- name: wake_listener
-- An empty notification: ends the listener's blocking read at once.
SELECT pg_notify(%(channel)s, '{"j": []}')
