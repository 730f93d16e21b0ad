-- Schema administration for the `queuer` command: checks, archive partitions,
-- retention and key rotation. DDL that is made per table (durability,
-- autovacuum, grants) is built in admin.py from its lists of tables.

-- name: relation_exists
SELECT to_regclass(%(name)s) IS NOT NULL

-- name: relation_persistence
SELECT relpersistence FROM pg_class WHERE oid = to_regclass(%(name)s)

-- name: maintain_archive
SELECT created, dropped FROM {schema}.archive_maintain(%(partition_seconds)s, %(ahead)s, %(keep_seconds)s, %(since)s)

-- name: archive_partition_names
SELECT name FROM {schema}.archive_partition ORDER BY lower_bound

-- name: count_archive
SELECT count(*) FILTER (WHERE ended_at < now() - make_interval(secs => %(older_than)s)), count(*)
FROM {schema}.job_archive

-- name: prune_archive_batch
-- A row is (tableoid, ctid): ctids repeat from one partition to the next. A job
-- that a job still in the queue depends on is kept (few jobs wait at a time).
WITH needed AS (
    SELECT DISTINCT p.rid
    FROM {schema}.job AS j CROSS JOIN LATERAL unnest(j.depends_on) AS p (rid)
    WHERE j.workflow_id IS NOT NULL AND j.depends_on IS NOT NULL
), doomed AS (
    SELECT tableoid, ctid FROM {schema}.job_archive AS a
    WHERE ended_at < now() - make_interval(secs => %(older_than)s)
      AND (a.dependents IS NULL OR a.rid NOT IN (SELECT rid FROM needed))
    LIMIT %(batch_size)s
)
DELETE FROM {schema}.job_archive AS a USING doomed AS d WHERE a.tableoid = d.tableoid AND a.ctid = d.ctid

-- name: _not_under_current_key
WHERE id > %(after)s
  AND (substring(arguments_enc FROM 2 FOR 4) <> %(current_key)s OR substring(results_enc FROM 2 FOR 4) <> %(current_key)s)
ORDER BY id LIMIT %(batch_size)s

-- name: reencrypt_read_job
SELECT id, rid, origin_rid, arguments_enc, results_enc FROM {schema}.job {_not_under_current_key}

-- name: reencrypt_read_job_archive
SELECT id, rid, origin_rid, arguments_enc, results_enc FROM {schema}.job_archive {_not_under_current_key}

-- name: _swap_blobs
-- Each blob is replaced only if it is still the one that was read: a worker
-- writing at the same time is never overwritten.
SET arguments_enc = CASE WHEN arguments_enc = %(old_arguments)s THEN %(new_arguments)s ELSE arguments_enc END,
    results_enc = CASE WHEN results_enc = %(old_results)s THEN %(new_results)s ELSE results_enc END
WHERE id = %(id)s

-- name: reencrypt_write_job
UPDATE {schema}.job {_swap_blobs}

-- name: reencrypt_write_job_archive
UPDATE {schema}.job_archive {_swap_blobs}
