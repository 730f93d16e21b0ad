-- The web UI's own state (queuer web), shared by every server on the schema.

-- One row: the sessions epoch. A session cookie carries the epoch it was
-- issued in and is valid only while that is still the current one, so
-- `queuer web --revoke-sessions` (one UPDATE) ends every session at once.
CREATE TABLE {schema}.web_state (
    singleton        boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    session_epoch    bigint      NOT NULL DEFAULT 1,
    epoch_changed_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO {schema}.web_state DEFAULT VALUES;

-- Sessions that signed out: their cookie is refused until it would have
-- expired anyway, then the row goes. Holds the cookie's random id only,
-- which is no cookie without the server's key.
CREATE TABLE {schema}.web_session_revoked (
    session_id       text        PRIMARY KEY,
    expires_at       timestamptz NOT NULL
);

-- Every action done through the web UI: who (the client's address, through
-- trusted proxies, and which credential), what, on which jobs, when, and how
-- it ended. Read newest first by id (keyset pages), or by a job's rid.
CREATE TABLE {schema}.web_audit (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at               timestamptz NOT NULL DEFAULT now(),
    client           text        NOT NULL,
    credential       text        NOT NULL,
    action           text        NOT NULL,
    target           text,
    rids             uuid[]      NOT NULL DEFAULT '{}',
    outcome          text        NOT NULL
);
CREATE INDEX web_audit_rids_idx ON {schema}.web_audit USING gin (rids);
