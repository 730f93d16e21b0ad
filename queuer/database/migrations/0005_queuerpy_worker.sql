-- queuerPy's worker row: the names of the next-interval functions it can run.
ALTER TABLE {schema}.worker ADD COLUMN available_next_interval text[] NOT NULL DEFAULT '{}';
