-- The archive, partitioned by the time a job ended, so that retention drops
-- whole partitions (one DDL statement, no row-by-row delete, no vacuum work)
-- and a huge archive costs the queue nothing.
--
-- An existing archive is not copied: it becomes the first partition, for
-- everything that ended before now. Its rows stay where they are; retention
-- deletes them row by row until the whole partition is older than it, then
-- drops it too. A partition for "anything else" (DEFAULT) takes a job whose
-- end falls outside every partition, so archiving never fails.

LOCK TABLE {schema}.job_archive IN ACCESS EXCLUSIVE MODE;
ALTER TABLE {schema}.job_archive RENAME TO job_archive_legacy;
ALTER INDEX {schema}.job_archive_rid_idx RENAME TO job_archive_legacy_rid_idx;
ALTER INDEX {schema}.job_archive_ended_at_idx RENAME TO job_archive_legacy_ended_at_idx;
ALTER INDEX {schema}.job_archive_task_status_idx RENAME TO job_archive_legacy_task_status_idx;

CREATE TABLE {schema}.job_archive (LIKE {schema}.job_archive_legacy INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (ended_at);

-- Every partition of the archive but the DEFAULT one, with its range.
CREATE TABLE {schema}.archive_partition (
    name        text        PRIMARY KEY,
    lower_bound timestamptz NOT NULL,
    upper_bound timestamptz NOT NULL CHECK (upper_bound > lower_bound)
);

DO $migrate$
DECLARE
    cutover timestamptz;
BEGIN
    IF EXISTS (SELECT 1 FROM {schema}.job_archive_legacy) THEN
        -- Everything archived so far ended before this (the table is locked).
        cutover := greatest(clock_timestamp(),
                            (SELECT max(ended_at) FROM {schema}.job_archive_legacy) + interval '1 microsecond');
        EXECUTE format('ALTER TABLE {schema}.job_archive ATTACH PARTITION {schema}.job_archive_legacy '
                       'FOR VALUES FROM (MINVALUE) TO (%L)', cutover);
        INSERT INTO {schema}.archive_partition VALUES ('job_archive_legacy', '-infinity', cutover);
    ELSE
        DROP TABLE {schema}.job_archive_legacy;
    END IF;
END
$migrate$;

-- On the parent they are templates: each partition has its own. The rid index
-- is not unique (a unique index must hold the partition key): a job reaches the
-- archive only by leaving job, where its rid is unique, in the same statement.
-- ON ONLY: an earlier archive keeps its own unique rid index, no rebuild.
CREATE INDEX job_archive_rid_idx ON ONLY {schema}.job_archive (rid);
CREATE INDEX job_archive_ended_at_idx ON {schema}.job_archive (ended_at);
CREATE INDEX job_archive_task_status_idx ON {schema}.job_archive (task_name, status);

CREATE TABLE {schema}.job_archive_default PARTITION OF {schema}.job_archive DEFAULT;

-- Partition upkeep: make sure partitions cover [since (default now), now + ahead
-- partitions), and drop every partition that ended longer than keep_seconds ago.
-- Partitions are partition_seconds long, aligned to the epoch (midnight UTC for
-- days), named job_archive_pYYYYMMDD_HHMMSS after their start; a new one copies
-- the newest one's persistence and storage settings (queuer durability, autovac).
-- SECURITY DEFINER: roles without DDL rights (queuer grant) run it as its owner.
-- A partition busy elsewhere (a long read holds its lock) is left for next time.
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
                -- Rows for this range already sit in the DEFAULT partition, or it is busy: they stay
                -- there (retention deletes them row by row); the next slot is tried.
                WHEN check_violation OR lock_not_available THEN NULL;
            END;
        END IF;
        slot := slot + step;
    END LOOP;
    IF keep_seconds IS NOT NULL THEN
        FOR part IN SELECT name FROM {schema}.archive_partition
                    WHERE upper_bound <= now() - make_interval(secs => keep_seconds)
                    ORDER BY lower_bound LOOP
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

SELECT * FROM {schema}.archive_maintain(86400, 2);
