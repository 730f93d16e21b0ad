-- Statements for task limits. A limited task is claimed in its own short
-- transaction that first takes the task's advisory lock, so workers decide one
-- after another and never both see the same free room.

-- name: lock_task_limit
SELECT pg_advisory_xact_lock(hashtext('queuer.limit'), hashtext(%(key)s));

-- name: count_running_of_task
SELECT count(*) AS running FROM {schema}.job WHERE task_name = %(task_name)s AND status = 'RUNNING';

-- name: refill_rate_tokens
-- Tokens grow at rate per second up to burst; the wall clock (not the
-- transaction's start, which may predate the lock wait) measures the time.
INSERT INTO {schema}.task_rate AS r (task_name, tokens, refilled_at)
VALUES (%(task_name)s, %(burst)s, clock_timestamp())
ON CONFLICT (task_name) DO UPDATE
SET tokens = least(%(burst)s, r.tokens + extract(epoch FROM clock_timestamp() - r.refilled_at) * %(rate)s),
    refilled_at = clock_timestamp()
RETURNING tokens;

-- name: spend_rate_tokens
UPDATE {schema}.task_rate SET tokens = tokens - %(spent)s WHERE task_name = %(task_name)s;
