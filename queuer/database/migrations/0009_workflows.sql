-- Workflows: jobs that wait for other jobs.
--
-- A job with dependencies is WAITING (claimable by no one) with waiting_for =
-- the number of its parents that have not ended; depends_on lists them, and
-- each parent lists its dependents. When a parent reaches the archive, the
-- statement that put it there releases its children (a trigger on the archive,
-- so every way a job ends counts: an outcome, a cancel, a rescue that gives up):
-- the last parent to end makes a child QUEUED. A parent that did not succeed
-- cancels, at once and transitively, the dependents that only run after success.
-- Steps: the results of a job's steps, kept with the job across its attempts.

ALTER TABLE {schema}.job
    ADD COLUMN workflow_id text,
    ADD COLUMN depends_on  uuid[],
    ADD COLUMN dependents  uuid[],
    ADD COLUMN waiting_for integer NOT NULL DEFAULT 0,
    ADD COLUMN steps       jsonb;
ALTER TABLE {schema}.job DROP CONSTRAINT job_status_check;
ALTER TABLE {schema}.job ADD CONSTRAINT job_status_check
    CHECK (status IN ('QUEUED', 'SCHEDULED', 'RUNNING', 'WAITING'));

ALTER TABLE {schema}.job_archive
    ADD COLUMN workflow_id text,
    ADD COLUMN depends_on  uuid[],
    ADD COLUMN dependents  uuid[],
    ADD COLUMN steps       jsonb;

CREATE INDEX job_workflow_idx ON {schema}.job (workflow_id) WHERE workflow_id IS NOT NULL;
CREATE INDEX job_archive_workflow_idx ON {schema}.job_archive (workflow_id) WHERE workflow_id IS NOT NULL;

-- Runs once per statement that archives jobs; does nothing unless one of them has dependents.
CREATE FUNCTION {schema}.settle_dependents() RETURNS trigger
LANGUAGE plpgsql
AS $settle$
DECLARE
    channel        text := 'queuer.' || TG_TABLE_SCHEMA;
    sent           bigint;
    any_dependents boolean;
    any_failed     boolean;
    due_tasks      text[];
BEGIN
    SELECT bool_or(e.dependents IS NOT NULL), bool_or(e.dependents IS NOT NULL AND e.status <> 'SUCCEEDED')
    INTO any_dependents, any_failed
    FROM ended AS e;
    IF NOT any_dependents THEN
        RETURN NULL;
    END IF;

    -- Dependents of a parent that did not succeed, and theirs in turn, that run
    -- only after success: cancelled in this one statement. Archiving them runs
    -- this function once more, for their dependents that run anyway.
    IF any_failed THEN
        WITH RECURSIVE failed_parent AS (
            SELECT rid, dependents FROM ended WHERE dependents IS NOT NULL AND status <> 'SUCCEEDED'
        ), doomed (id, rid, dependents) AS (
            SELECT c.id, c.rid, c.dependents
            FROM failed_parent AS p
            CROSS JOIN LATERAL unnest(p.dependents) AS d (rid)
            JOIN {schema}.job AS c ON c.rid = d.rid
            WHERE c.status = 'WAITING' AND coalesce(c.options ->> 'on_dependency_failure', 'cancel') = 'cancel'
            UNION
            SELECT c.id, c.rid, c.dependents
            FROM doomed AS p
            CROSS JOIN LATERAL unnest(p.dependents) AS d (rid)
            JOIN {schema}.job AS c ON c.rid = d.rid
            WHERE c.status = 'WAITING' AND coalesce(c.options ->> 'on_dependency_failure', 'cancel') = 'cancel'
        ), gone AS (
            DELETE FROM {schema}.job AS j
            USING (SELECT DISTINCT id FROM doomed) AS x
            WHERE j.id = x.id AND j.status = 'WAITING'
            RETURNING j.*
        ), archived AS (
            INSERT INTO {schema}.job_archive (
                id, rid, task_name, parameters, parameters_keyed, options, priority, scheduled_at, started_at,
                worker_rid, attempts, max_attempts, timeout_seconds, schedule_count, unique_key, origin_rid,
                created_at, arguments_enc, workflow_id, depends_on, dependents, steps,
                failures, rescues, crashes, status, error)
            SELECT g.id, g.rid, g.task_name, g.parameters, g.parameters_keyed, g.options, g.priority, g.scheduled_at,
                   g.started_at, g.worker_rid, g.attempts, g.max_attempts, g.timeout_seconds, g.schedule_count,
                   g.unique_key, g.origin_rid, g.created_at, g.arguments_enc, g.workflow_id, g.depends_on,
                   g.dependents, g.steps, g.failures, g.rescues, g.crashes, 'CANCELLED',
                   'DependencyFailedError: job ' || coalesce((
                       SELECT parent::text FROM unnest(g.depends_on) AS parent
                       WHERE parent IN (SELECT rid FROM failed_parent) OR parent IN (SELECT rid FROM doomed)
                       LIMIT 1), '?')
                   || ', which this job depends on, did not succeed (on_dependency_failure="cancel")'
            FROM gone AS g
            RETURNING rid, task_name
        ), items AS (
            SELECT json_build_array('end', rid, 'CANCELLED', task_name) AS item FROM archived
        )
        -- Chunked under NOTIFY's 8000-byte limit, as the statements that end jobs do.
        SELECT count(*) INTO sent FROM (
            SELECT pg_notify(channel, json_build_object('j', json_agg(item))::text)
            FROM (SELECT item, sum(octet_length(item::text) + 2) OVER (ROWS UNBOUNDED PRECEDING) / 4800 AS chunk
                  FROM items) AS chunked
            GROUP BY chunk
        ) AS notified;
    END IF;

    -- The other dependents count their parents down; the last parent to end
    -- releases a child (due now, so a claim that goes on from where it left off
    -- still finds it). Children are taken in rid order, so that two statements
    -- releasing the same children take their locks in the same order.
    WITH released AS (
        UPDATE {schema}.job AS j
        SET waiting_for = j.waiting_for - c.n,
            status = CASE WHEN j.waiting_for - c.n > 0 THEN 'WAITING'
                          WHEN j.scheduled_at > now() THEN 'SCHEDULED' ELSE 'QUEUED' END,
            scheduled_at = CASE WHEN j.waiting_for - c.n > 0 THEN j.scheduled_at
                                ELSE greatest(j.scheduled_at, now()) END,
            updated_at = now()
        FROM (SELECT d.rid, count(*) AS n
              FROM ended AS e CROSS JOIN LATERAL unnest(e.dependents) AS d (rid)
              WHERE e.dependents IS NOT NULL
              GROUP BY d.rid
              ORDER BY d.rid) AS c
        WHERE j.rid = c.rid AND j.status = 'WAITING'
        RETURNING j.task_name, j.status
    )
    SELECT array_agg(DISTINCT task_name) FILTER (WHERE status <> 'WAITING') INTO due_tasks FROM released;
    IF due_tasks IS NOT NULL THEN
        -- Workers of these tasks claim at once (the names are short: one notification holds many).
        SELECT count(*) INTO sent FROM (
            SELECT pg_notify(channel, json_build_object('j', json_agg(item))::text)
            FROM (SELECT item, sum(octet_length(item::text) + 2) OVER (ROWS UNBOUNDED PRECEDING) / 4800 AS chunk
                  FROM (SELECT json_build_array('insert', NULL, t) AS item FROM unnest(due_tasks) AS t) AS items
                 ) AS chunked
            GROUP BY chunk
        ) AS notified;
    END IF;

    RETURN NULL;
END
$settle$;

CREATE TRIGGER job_archive_settle_dependents
    AFTER INSERT ON {schema}.job_archive
    REFERENCING NEW TABLE AS ended
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.settle_dependents();

-- Retention keeps every archived job that a job still waiting or running depends on.
CREATE OR REPLACE FUNCTION {schema}.archive_maintain(partition_seconds double precision, ahead integer,
                                          keep_seconds double precision DEFAULT NULL,
                                          since timestamptz DEFAULT NULL)
RETURNS TABLE (created integer, dropped integer)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '200ms'
AS $maintain$
DECLARE
    step     interval := make_interval(secs => partition_seconds);
    horizon  timestamptz := now() + make_interval(secs => partition_seconds * ahead);
    slot     timestamptz;
    lo       timestamptz;
    hi       timestamptz;
    covered  timestamptz;
    following timestamptz;
    newest   record;
    part     record;
    pname    text;
    needed   boolean;
BEGIN
    created := 0;
    dropped := 0;
    IF partition_seconds IS NULL OR partition_seconds < 60 THEN
        RAISE EXCEPTION 'an archive partition must span at least 60 seconds, not %', partition_seconds;
    END IF;
    slot := to_timestamp(floor(extract(epoch FROM coalesce(since, now())) / partition_seconds) * partition_seconds);
    WHILE slot < horizon LOOP
        lo := slot;
        hi := slot + step;
        SELECT max(upper_bound) INTO covered FROM {schema}.archive_partition
        WHERE lower_bound <= lo AND upper_bound > lo;
        IF covered IS NOT NULL THEN
            lo := covered;
        END IF;
        SELECT min(lower_bound) INTO following FROM {schema}.archive_partition WHERE lower_bound >= lo;
        IF following IS NOT NULL AND following < hi THEN
            hi := following;
        END IF;
        IF lo < hi THEN
            SELECT c.relpersistence, c.reloptions INTO newest
            FROM {schema}.archive_partition AS p
            JOIN pg_class AS c ON c.oid = to_regclass('{schema}.' || quote_ident(p.name))
            ORDER BY p.upper_bound DESC LIMIT 1;
            pname := 'job_archive_p' || to_char(lo AT TIME ZONE 'UTC', 'YYYYMMDD"_"HH24MISS');
            BEGIN
                EXECUTE format('CREATE %s TABLE {schema}.%I PARTITION OF {schema}.job_archive '
                               'FOR VALUES FROM (%L) TO (%L) %s',
                               CASE WHEN newest.relpersistence = 'u' THEN 'UNLOGGED' ELSE '' END, pname, lo, hi,
                               CASE WHEN newest.reloptions IS NOT NULL
                                    THEN 'WITH (' || array_to_string(newest.reloptions, ', ') || ')' ELSE '' END);
                INSERT INTO {schema}.archive_partition VALUES (pname, lo, hi);
                created := created + 1;
            EXCEPTION
                WHEN check_violation OR lock_not_available THEN NULL;
            END;
        END IF;
        slot := slot + step;
    END LOOP;
    IF keep_seconds IS NOT NULL THEN
        FOR part IN SELECT name FROM {schema}.archive_partition
                    WHERE upper_bound <= now() - make_interval(secs => keep_seconds)
                    ORDER BY lower_bound LOOP
            -- Few jobs wait at a time: look up their parents in the partition, not the partition's rows.
            EXECUTE format('SELECT EXISTS (SELECT 1 FROM {schema}.job AS j '
                           'CROSS JOIN LATERAL unnest(j.depends_on) AS p (rid) '
                           'JOIN {schema}.%I AS a ON a.rid = p.rid '
                           'WHERE j.workflow_id IS NOT NULL AND j.depends_on IS NOT NULL)', part.name) INTO needed;
            CONTINUE WHEN needed;
            BEGIN
                EXECUTE format('DROP TABLE {schema}.%I', part.name);
                DELETE FROM {schema}.archive_partition WHERE name = part.name;
                dropped := dropped + 1;
            EXCEPTION
                WHEN lock_not_available THEN EXIT;
            END;
        END LOOP;
    END IF;
    RETURN NEXT;
END
$maintain$;
REVOKE ALL ON FUNCTION {schema}.archive_maintain(double precision, integer, double precision, timestamptz) FROM PUBLIC;
