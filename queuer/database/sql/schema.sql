-- Installing and removing queuer's tables (the migrations themselves are in migrations/).

-- name: installed_version
SELECT coalesce(max(version), 0) FROM {schema}.schema_version

-- name: lock_schema_installers
-- Serializes installers of one schema; the lock ends with the transaction.
SELECT pg_advisory_xact_lock(hashtext('queuer.migrate'), hashtext(%(schema)s))

-- name: create_schema
CREATE SCHEMA IF NOT EXISTS {schema}

-- name: create_schema_version
CREATE TABLE IF NOT EXISTS {schema}.schema_version (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)

-- name: record_migration
INSERT INTO {schema}.schema_version (version, name) VALUES (%(version)s, %(name)s)
