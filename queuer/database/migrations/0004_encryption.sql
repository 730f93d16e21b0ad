-- Client-side encrypted payloads (see helper/encryption.py). When set, the
-- clear json columns hold only empty placeholders.
ALTER TABLE {schema}.job ADD COLUMN arguments_enc bytea;
ALTER TABLE {schema}.job ADD COLUMN results_enc bytea;
ALTER TABLE {schema}.job_archive ADD COLUMN arguments_enc bytea;
ALTER TABLE {schema}.job_archive ADD COLUMN results_enc bytea;
