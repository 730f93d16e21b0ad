-- Statements on the job and job_archive tables.
-- Each block starts with "-- name: <name>"; {schema} is the quoted schema.
-- Statements that end jobs also NOTIFY, once per statement, never per row: each
-- gathers its events as an "items" CTE of JSON arrays, and {notify_items} sends them
-- in chunks under PostgreSQL's 8000-byte limit (see NOTIFY_ITEMS in queries.py).
-- An event is [event, rid, detail, extra] (insert/retry: task, status; end: status,
-- task; cancel: worker rid, task; free: serial key).

-- name: _job_columns
rid, task_name, parameters, parameters_keyed, options, priority, status, scheduled_at, max_attempts, timeout_seconds,
unique_key, origin_rid, schedule_count, serial_key, arguments_enc, crash_budget, group_key

-- name: _new_job
-- The row of a job to add, from the parameters of insert_job and insert_job_replace. With
-- unique_for, a job with the same unique key that ended that recently counts as a duplicate:
-- then no row is added.
SELECT %(rid)s::uuid, %(task_name)s::text, %(parameters)s::json, %(parameters_keyed)s::json,
       %(options)s::jsonb, %(priority)s::integer,
       CASE WHEN COALESCE(%(scheduled_at)s::timestamptz,
                          now() + make_interval(secs => %(delay_seconds)s)) > now()
            THEN 'SCHEDULED' ELSE 'QUEUED' END,
       COALESCE(%(scheduled_at)s::timestamptz, now() + make_interval(secs => %(delay_seconds)s)),
       %(max_attempts)s::integer, %(timeout_seconds)s::double precision,
       %(unique_key)s::text, %(origin_rid)s::uuid, %(schedule_count)s::integer, %(serial_key)s::text,
       %(arguments_enc)s::bytea, %(crash_budget)s::integer,
       -- A job of a task claimed by group always has a key: '' when none was given.
       coalesce(%(group_key)s::text,
                (SELECT '' FROM {schema}.task_control WHERE task_name = %(task_name)s AND grouped))
WHERE %(unique_for)s::double precision IS NULL OR NOT EXISTS (
    SELECT 1 FROM {schema}.job_archive
    WHERE unique_key = %(unique_key)s AND ended_at > now() - make_interval(secs => %(unique_for)s))

-- name: _notify_inserted
SELECT inserted.*,
       pg_notify(%(channel)s, json_build_object(
           'j', json_build_array(json_build_array('insert', rid, task_name, status)))::text) AS notified
FROM inserted

-- name: insert_job
WITH inserted AS (
    INSERT INTO {schema}.job ({_job_columns})
    {_new_job}
    -- A unique key already queued or running: no row comes back, and the
    -- caller raises DuplicateJobError or returns the existing job.
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
    RETURNING *
)
{_notify_inserted};

-- name: insert_job_replace
-- Debounce: a job with the same unique key still queued takes this job's arguments,
-- options and start; one that runs is left alone (no row comes back).
WITH inserted AS (
    INSERT INTO {schema}.job AS j ({_job_columns})
    {_new_job}
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO UPDATE
    SET parameters = excluded.parameters, parameters_keyed = excluded.parameters_keyed, options = excluded.options,
        priority = excluded.priority, status = excluded.status, scheduled_at = excluded.scheduled_at,
        max_attempts = excluded.max_attempts, timeout_seconds = excluded.timeout_seconds,
        serial_key = excluded.serial_key, group_key = excluded.group_key, crash_budget = excluded.crash_budget,
        arguments_enc = excluded.arguments_enc,
        -- Sealed arguments are bound to the rid they were sealed for, the new one: the row
        -- keeps it as the binding (origin_rid) it opens them with.
        origin_rid = CASE WHEN excluded.arguments_enc IS NOT NULL THEN coalesce(excluded.origin_rid, excluded.rid)
                          ELSE j.origin_rid END,
        updated_at = now()
    WHERE j.status IN ('QUEUED', 'SCHEDULED')
    RETURNING *
)
{_notify_inserted};

-- name: get_job_ended_by_unique_key
-- The latest job with this unique key that ended in the window (unique_for).
SELECT * FROM {schema}.job_archive
WHERE unique_key = %(unique_key)s AND ended_at > now() - make_interval(secs => %(unique_for)s)
ORDER BY ended_at DESC LIMIT 1;

-- name: notify_inserted_tasks
-- After a COPY: notifications naming the tasks that got new jobs (chunked: a batch may
-- name many tasks); and which tasks of jobs added without a group key are claimed by
-- group (their jobs then get the key '': key_grouped_jobs), in the same round trip.
WITH items AS (
    SELECT json_build_array('insert', NULL, t) AS item FROM unnest(%(task_names)s::text[]) AS t
), notified AS (
    {notify_items}
)
SELECT (SELECT count(*) FROM notified) AS notified,
       (SELECT coalesce(array_agg(task_name), '{}') FROM {schema}.task_control
        WHERE grouped AND task_name = ANY(%(unkeyed)s::text[])) AS grouped;

-- name: _claimable
-- What makes a row of job (as c) claimable by this worker: shared by the claims below.
c.status IN ('QUEUED', 'SCHEDULED')
      AND c.scheduled_at <= now()
      AND c.task_name = ANY(%(task_names)s::text[])
      -- Suspects (see the rescue below) are claimed apart, to run in a process of their own.
      AND c.suspect = %(suspects)s
      -- A worker that was declared dead, or asked to stop, takes nothing.
      AND EXISTS (SELECT 1 FROM {schema}.worker WHERE rid = %(worker_rid)s AND status = 'RUNNING')
      AND (c.serial_key IS NULL OR NOT EXISTS (
               SELECT 1 FROM {schema}.job AS r
               WHERE r.serial_key = c.serial_key AND r.status = 'RUNNING'))

-- name: _first_in_claim_order
-- The first claimable rows in claim order (highest priority, earliest due, oldest), skipping rows
-- another worker holds.
ORDER BY priority DESC, scheduled_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED

-- name: _picked
-- The candidates to take for a new attempt each. Only one job per serial key is
-- taken at a time (job_running_serial_key_idx settles a race between two
-- workers: the later claim fails and is retried).
picked AS (
    SELECT id FROM candidates WHERE serial_key IS NULL
    UNION ALL
    SELECT id FROM (
        SELECT DISTINCT ON (serial_key) id
        FROM candidates
        WHERE serial_key IS NOT NULL
        ORDER BY serial_key, priority DESC, scheduled_at, id
    ) AS first_of_each_key
)

-- name: _take_picked
UPDATE {schema}.job AS j
SET status = 'RUNNING',
    attempts = j.attempts + 1,
    worker_rid = %(worker_rid)s,
    started_at = now(),
    cancel_requested = false,
    confirmed_at = NULL,
    confirmed_alone = false,
    crash_budget = coalesce(j.crash_budget, %(default_crash_budget)s::integer),
    -- A job that brought no OnError runs under this worker's default policy;
    -- store it so the master's rescue counts attempts the same way.
    max_attempts = CASE WHEN j.options ? 'on_error' THEN j.max_attempts ELSE %(default_max_attempts)s::integer END,
    timeout_seconds = CASE WHEN j.options ? 'on_error' THEN j.timeout_seconds ELSE %(default_timeout)s::double precision END,
    updated_at = now()
FROM picked
WHERE j.id = picked.id
-- Arguments come back as text: most jobs have none, and "[]" needs no JSON parser.
RETURNING j.id, j.rid, j.task_name, j.parameters::text, j.parameters_keyed::text, j.options, j.priority,
          j.scheduled_at, j.attempts, j.max_attempts, j.timeout_seconds, j.schedule_count,
          j.created_at, j.origin_rid, j.arguments_enc, j.failures, j.rescues, j.workflow_id, j.depends_on, j.steps,
          j.snoozes, j.group_key

-- name: claim_jobs
-- One statement: pick the next claimable rows in claim order, skipping rows
-- another worker holds, and take them for this attempt.
WITH candidates AS (
    SELECT id, serial_key, priority, scheduled_at
    FROM {schema}.job AS c
    WHERE {_claimable}
    {_first_in_claim_order}
), {_picked} {_take_picked};

-- name: claim_jobs_after
-- The same claim, starting in claim order after the last job this worker took
-- (after_priority, after_at, after_id). The claim index keeps an entry for every
-- job claimed since vacuum last ran; while a snapshot is held open elsewhere
-- (an analytics query, a forgotten BEGIN, a replica's feedback) vacuum cannot
-- remove them, and a claim from the start would walk all of them every time.
-- Three ranges of the index, in claim order: higher priorities, the rest of
-- this priority, lower priorities. A WITH query is run only as far as it is
-- read, so once the first ones fill the LIMIT the later ones are not read at
-- all, and no row is locked that is not taken. Jobs that went back into the
-- queue behind the cursor are found by the full claim (claim_jobs), which the
-- poller runs every second, after a rescue, and whenever this one comes up short.
WITH higher AS (
    SELECT id, serial_key, priority, scheduled_at
    FROM {schema}.job AS c
    WHERE {_claimable} AND c.priority > %(after_priority)s::integer
    {_first_in_claim_order}
), here AS (
    SELECT id, serial_key, priority, scheduled_at
    FROM {schema}.job AS c
    WHERE {_claimable} AND c.priority = %(after_priority)s::integer
      AND (c.scheduled_at, c.id) > (%(after_at)s::timestamptz, %(after_id)s::bigint)
    {_first_in_claim_order}
), lower AS (
    SELECT id, serial_key, priority, scheduled_at
    FROM {schema}.job AS c
    WHERE {_claimable} AND c.priority < %(after_priority)s::integer
    {_first_in_claim_order}
), candidates AS (
    SELECT * FROM (SELECT * FROM higher UNION ALL SELECT * FROM here UNION ALL SELECT * FROM lower) AS in_claim_order
    LIMIT %(limit)s
), {_picked} {_take_picked};

-- name: claim_grouped
-- The claim of a task whose jobs are claimed by group (group_key): round-robin
-- between the groups that have claimable jobs, so one group's backlog cannot
-- hold up another's jobs, each group at most group_limit running and
-- group_rate starting a second (run under the task's lock). Its jobs added
-- without a group key have the key '' (see task_control.grouped).
WITH RECURSIVE keys (group_key) AS (
    -- The groups with jobs due, one index probe each (a skip scan of job_group_claim_idx).
    (SELECT c.group_key FROM {schema}.job AS c
     WHERE c.task_name = %(task_name)s AND c.group_key IS NOT NULL AND c.status IN ('QUEUED', 'SCHEDULED')
       AND c.scheduled_at <= now() AND c.suspect = %(suspects)s
     ORDER BY c.group_key LIMIT 1)
    UNION ALL
    SELECT (SELECT c.group_key FROM {schema}.job AS c
            WHERE c.task_name = %(task_name)s AND c.group_key > keys.group_key
              AND c.status IN ('QUEUED', 'SCHEDULED') AND c.scheduled_at <= now() AND c.suspect = %(suspects)s
            ORDER BY c.group_key LIMIT 1)
    FROM keys WHERE keys.group_key IS NOT NULL
), groups AS (
    SELECT group_key FROM keys WHERE group_key IS NOT NULL
), tokens AS (
    -- Each group's rate tokens, refilled for the time since its last claim (a burst of 0.2 s at most).
    SELECT g.group_key,
           least(greatest(1.0, %(group_rate)s::double precision * 0.2),
                 coalesce(r.tokens, greatest(1.0, %(group_rate)s::double precision * 0.2))
                 + %(group_rate)s::double precision * extract(epoch FROM now() - coalesce(r.updated_at, now())))
               AS tokens
    FROM groups AS g
    LEFT JOIN {schema}.group_rate AS r ON r.task_name = %(task_name)s AND r.group_key = g.group_key
    WHERE %(group_rate)s::double precision IS NOT NULL
), running AS (
    -- What runs of each group, in one pass over the task's running jobs.
    SELECT r.group_key, count(*) AS n FROM {schema}.job AS r
    WHERE r.task_name = %(task_name)s AND r.status = 'RUNNING' AND %(group_limit)s::integer IS NOT NULL
    GROUP BY r.group_key
), room AS (
    SELECT g.group_key,
           least(coalesce(%(group_limit)s::integer - coalesce(running.n, 0), %(limit)s),
                 coalesce(floor(tokens.tokens), %(limit)s)) AS room
    FROM groups AS g
    LEFT JOIN running ON running.group_key = g.group_key
    LEFT JOIN tokens ON tokens.group_key = g.group_key
), share AS (
    -- A first round: every group gets an equal share of the batch.
    SELECT ceil(%(limit)s::numeric / greatest(1, count(*)))::integer AS n FROM room WHERE room > 0
), candidates AS (
    SELECT turn.id, turn.serial_key, turn.priority, turn.scheduled_at
    FROM room CROSS JOIN share
    CROSS JOIN LATERAL (
        SELECT s.*, row_number() OVER (ORDER BY s.priority DESC, s.scheduled_at, s.id) AS turn
        FROM (
            -- A group's next jobs, from job_group_claim_idx in claim order.
            SELECT c.id, c.serial_key, c.priority, c.scheduled_at
            FROM {schema}.job AS c
            WHERE {_claimable} AND c.task_name = %(task_name)s AND c.group_key = room.group_key
            ORDER BY c.priority DESC, c.scheduled_at, c.id
            LIMIT least(room.room, share.n)
            FOR UPDATE SKIP LOCKED
        ) AS s
    ) AS turn
    WHERE room.room > 0
    ORDER BY turn.priority DESC, turn.turn, turn.scheduled_at, turn.id
    LIMIT %(limit)s
), {_picked}, taken AS (
    {_take_picked}
), spent AS (
    INSERT INTO {schema}.group_rate AS r (task_name, group_key, tokens, updated_at)
    SELECT %(task_name)s, t.group_key, t.tokens - (SELECT count(*) FROM taken WHERE taken.group_key = t.group_key), now()
    FROM tokens AS t
    ON CONFLICT (task_name, group_key) DO UPDATE SET tokens = excluded.tokens, updated_at = excluded.updated_at
)
SELECT * FROM taken;

-- name: confirm_start
-- A job that has been through a crash records that it starts, so that a later
-- crash of its worker makes it a suspect.
UPDATE {schema}.job SET confirmed_at = now()
WHERE id = %(id)s AND attempts = %(attempt)s AND worker_rid = %(worker_rid)s
RETURNING id;

-- name: next_due_in
-- Seconds until the next scheduled job of these tasks becomes claimable.
SELECT extract(epoch FROM min(scheduled_at) - now()) AS wait_seconds
FROM {schema}.job
WHERE status = 'SCHEDULED' AND task_name = ANY(%(task_names)s::text[]);

-- name: suspects_due
-- Which of these tasks have suspects due now, and seconds until the next one that is not due yet: read
-- from job_suspect_idx (suspects are few), so that no claim is tried for tasks without one.
SELECT coalesce(array_agg(DISTINCT task_name) FILTER (WHERE scheduled_at <= now()), '{}') AS due,
       extract(epoch FROM min(scheduled_at) FILTER (WHERE scheduled_at > now()) - now()) AS next_in
FROM {schema}.job
WHERE suspect AND status IN ('QUEUED', 'SCHEDULED') AND task_name = ANY(%(task_names)s::text[]);

-- name: has_due_jobs
SELECT EXISTS (
    SELECT 1 FROM {schema}.job
    WHERE status IN ('QUEUED', 'SCHEDULED') AND scheduled_at <= now()
      AND task_name = ANY(%(task_names)s::text[])
) AS due;

-- name: running_jobs_of_worker
SELECT id, attempts FROM {schema}.job WHERE worker_rid = %(worker_rid)s AND status = 'RUNNING';

-- name: record_outcomes
-- The completer's one statement per batch. Every change is fenced by the
-- attempt's identity (worker_rid, attempts): an outcome of a rescued,
-- cancelled or timed-out attempt changes nothing. (worker_rid is set only
-- while a job is RUNNING, so no status test is needed; leaving it out also
-- keeps the planner off job_running_worker_idx, whose dead entries would make
-- each batch cost as much as every job this worker ever ran.)
-- The batch comes as one JSON array of [id, attempt, status, results, error,
-- delay, next_at, results_enc (base64)]: one parameter, encoded in C.
WITH outcome AS (
    SELECT (o->>0)::bigint AS id, (o->>1)::integer AS attempt, o->>2 AS status, o->>3 AS results,
           o->>4 AS error, (o->>5)::double precision AS delay, (o->>6)::timestamptz AS next_at,
           decode(o->>7, 'base64') AS results_enc
    FROM json_array_elements(%(outcomes)s::json) AS o
), retried AS (
    UPDATE {schema}.job AS j
    SET status = CASE WHEN o.delay > 0 THEN 'SCHEDULED' ELSE 'QUEUED' END,
        scheduled_at = now() + make_interval(secs => o.delay),
        worker_rid = NULL,
        -- A snooze is no failure: it spends no retry and keeps the last error.
        failures = j.failures + (o.status = 'RETRY')::integer,
        snoozes = j.snoozes + (o.status = 'SNOOZE')::integer,
        error = CASE WHEN o.status = 'RETRY' THEN o.error ELSE j.error END,
        updated_at = now()
    FROM outcome AS o
    WHERE o.status IN ('RETRY', 'SNOOZE')
      AND j.id = o.id AND j.attempts = o.attempt
      AND j.worker_rid = %(worker_rid)s
    RETURNING j.id, j.rid, j.task_name, j.serial_key, j.status
), ended AS (
    DELETE FROM {schema}.job AS j
    USING outcome AS o
    WHERE o.status NOT IN ('RETRY', 'SNOOZE')
      AND j.id = o.id AND j.attempts = o.attempt
      AND j.worker_rid = %(worker_rid)s
    RETURNING j.*, o.status AS final_status, o.results AS final_results, o.error AS final_error,
              o.next_at AS final_next_at, o.results_enc AS final_results_enc
), archived AS (
    INSERT INTO {schema}.job_archive ({archived_columns}, failures, rescues, crashes,
                                      status, results, error, results_enc)
    SELECT {archived_columns}, failures + (final_status = 'FAILED')::integer, rescues, crashes,
           final_status, final_results::json, final_error, final_results_enc
    FROM ended
    RETURNING id, rid, status, task_name
), next_runs AS (
    -- A recurring job that ended (not cancelled) with runs left gets its next
    -- run in the same statement: exactly one next run per run. Run n is due at
    -- anchor + n * interval (no drift); slots already past are skipped, not
    -- replayed. A next-interval function's time comes from the worker instead.
    INSERT INTO {schema}.job (rid, task_name, parameters, parameters_keyed, options, priority, status,
                              scheduled_at, max_attempts, timeout_seconds, origin_rid, schedule_count,
                              serial_key, arguments_enc, crash_budget, group_key)
    SELECT gen_random_uuid(), e.task_name, e.parameters, e.parameters_keyed,
           -- Each run is a trace of its own: the first job's producer context stays with it.
           jsonb_set(e.options - 'trace', '{schedule,start}', to_jsonb(s.anchor)),
           e.priority, 'SCHEDULED', s.next_at, e.max_attempts, e.timeout_seconds,
           coalesce(e.origin_rid, e.rid), e.schedule_count + 1, e.serial_key, e.arguments_enc, e.crash_budget,
           e.group_key
    FROM ended AS e
    CROSS JOIN LATERAL (
        SELECT coalesce((e.options #>> '{schedule,start}')::timestamptz, e.created_at) AS anchor,
               (e.options #>> '{schedule,interval}')::double precision AS every,
               (e.options #>> '{schedule,max_count}')::integer AS max_count
    ) AS p
    CROSS JOIN LATERAL (
        SELECT p.anchor,
               coalesce(e.final_next_at,
                        p.anchor + make_interval(secs => p.every * greatest(
                            e.schedule_count + 1,
                            ceil(extract(epoch FROM now() - p.anchor) / p.every)))) AS next_at
    ) AS s
    WHERE e.final_status IN ('SUCCEEDED', 'FAILED')
      AND e.options ? 'schedule'
      AND (p.max_count = 0 OR e.schedule_count + 1 < p.max_count)
      AND s.next_at IS NOT NULL
    RETURNING id, rid, task_name
), events AS (
    SELECT id, 'end' AS event, rid, status AS detail, task_name AS extra FROM archived
    UNION ALL
    SELECT id, 'retry', rid, task_name, status FROM retried
    UNION ALL
    SELECT id, 'insert', rid, task_name, 'SCHEDULED' FROM next_runs
    UNION ALL
    -- A serial key is free again: workers claim its next job at once.
    SELECT id, 'free', rid, serial_key, NULL FROM ended WHERE serial_key IS NOT NULL
    UNION ALL
    SELECT id, 'free', rid, serial_key, NULL FROM retried WHERE serial_key IS NOT NULL
), items AS (
    SELECT json_build_array(event, rid, detail, extra) AS item FROM events
), notified AS (
    {notify_items}
)
SELECT (SELECT coalesce(array_agg(id), '{}') FROM events WHERE event IN ('end', 'retry')) AS applied_ids,
       (SELECT count(*) FROM notified) AS notifications;

-- name: release_jobs
-- Give claimed but unstarted jobs back, as if never claimed (no attempt counted).
-- Fenced like record_outcomes (and, like it, without a status test).
WITH released AS (
    UPDATE {schema}.job AS j
    SET status = CASE WHEN j.scheduled_at > now() THEN 'SCHEDULED' ELSE 'QUEUED' END,
        attempts = j.attempts - 1,
        worker_rid = NULL,
        started_at = NULL,
        updated_at = now()
    FROM unnest(%(ids)s::bigint[], %(attempts)s::integer[]) AS r(id, attempt)
    WHERE j.id = r.id AND j.attempts = r.attempt
      AND j.worker_rid = %(worker_rid)s
    RETURNING j.task_name
), items AS (
    SELECT DISTINCT ON (task_name) json_build_array('insert', NULL, task_name) AS item FROM released
), notified AS (
    {notify_items}
)
SELECT (SELECT count(*) FROM released) AS released, (SELECT count(*) FROM notified) AS notified;

-- name: cancel_job
-- Cancel queued or running jobs: archive them as CANCELLED at once and tell
-- their workers, which set the jobs' cancellation flags and discard their outcomes.
WITH gone AS (
    DELETE FROM {schema}.job WHERE rid = ANY(%(rids)s::uuid[]) RETURNING *
), archived AS (
    INSERT INTO {schema}.job_archive ({archived_columns}, failures, rescues, crashes, status, results, error)
    SELECT {archived_columns}, failures, rescues, crashes, 'CANCELLED', NULL, %(reason)s
    FROM gone
    RETURNING *
), items AS (
    SELECT json_build_array('cancel', rid, worker_rid, task_name) AS item FROM archived
    UNION ALL
    SELECT json_build_array('end', rid, 'CANCELLED', task_name) FROM archived
), notified AS (
    -- Chunked, not one notification per job: a bulk cancel may end thousands.
    {notify_items}
)
SELECT archived.*, (SELECT count(*) FROM notified) AS notified
FROM archived;

-- name: rescue_orphaned_jobs
-- The master's sweep: RUNNING jobs whose worker is DEAD (or gone) go back to
-- the queue, first in line. Blame needs proof: a job that had not recorded its
-- start is charged nothing; one that had started beside other jobs becomes a
-- suspect (it will run in a process of its own). Only a job known to have run
-- alone is charged the crash: workers no longer run jobs alone in their own
-- process, but an older version's may have.
WITH orphan AS (
    SELECT j.id,
           j.confirmed_at IS NOT NULL AND j.confirmed_alone AS charged,
           j.confirmed_at IS NOT NULL AS started,
           format('worker %%s died during attempt %%s', j.worker_rid, j.attempts) AS cause
    FROM {schema}.job AS j
    WHERE j.status = 'RUNNING'
      AND NOT EXISTS (SELECT 1 FROM {schema}.worker AS w
                      WHERE w.rid = j.worker_rid AND w.status <> 'DEAD')
    FOR UPDATE OF j SKIP LOCKED
), {_put_back_orphans}

-- name: charge_crash
-- A suspect's attempt crashed the process it ran in alone (see runtime/isolation.py):
-- the crash is its own. Charged, and back to the queue as a suspect, or FAILED
-- once out of crash budget.
WITH orphan AS (
    SELECT j.id, true AS charged, true AS started,
           format('attempt %%s crashed: %%s', j.attempts, %(cause)s::text) AS cause
    FROM {schema}.job AS j
    WHERE j.id = %(id)s AND j.attempts = %(attempt)s AND j.worker_rid = %(worker_rid)s AND j.status = 'RUNNING'
    FOR UPDATE OF j
), {_put_back_orphans}

-- name: _put_back_orphans
-- The jobs of "orphan" (id, charged, started, cause) go back to the queue, first in
-- line, each charged the crash when "charged"; "started" ones become suspects. A
-- job out of crash budget ends FAILED, saying so.
requeued AS (
    UPDATE {schema}.job AS j
    SET status = 'QUEUED',
        worker_rid = NULL,
        rescues = j.rescues + 1,
        crashes = j.crashes + o.charged::integer,
        suspect = j.suspect OR o.started,
        error = format('%%s; the job was put back (%%s)', o.cause,
                       CASE WHEN o.charged THEN format('crash %%s of %%s charged: it ran alone',
                                                       j.crashes + 1, j.crash_budget)
                            WHEN o.started THEN 'not charged: it ran beside other jobs; '
                                                'it will run in a process of its own'
                            ELSE 'not charged: not known to have started' END),
        updated_at = now()
    FROM orphan AS o
    WHERE j.id = o.id AND NOT (o.charged AND j.crashes + 1 >= coalesce(j.crash_budget, 1))
    RETURNING j.id, j.rid, j.task_name
), failed AS (
    DELETE FROM {schema}.job AS j
    USING orphan AS o
    WHERE j.id = o.id AND o.charged AND j.crashes + 1 >= coalesce(j.crash_budget, 1)
    RETURNING j.*, o.cause
), archived AS (
    INSERT INTO {schema}.job_archive ({archived_columns}, failures, rescues, crashes, status, results, error)
    SELECT {archived_columns}, failures, rescues + 1, crashes + 1, 'FAILED', NULL,
           format('CrashBudgetExceeded: the job crashed %%s times while it ran alone (crash budget %%s): '
                  'a poison job, whose task crashes the process it runs in. The last time: %%s',
                  crashes + 1, crash_budget, cause)
    FROM failed
    RETURNING id, rid, status, task_name
), events AS (
    SELECT id, 'end' AS event, rid, status AS detail, task_name AS extra FROM archived
    UNION ALL
    SELECT id, 'retry', rid, task_name, 'QUEUED' FROM requeued
), items AS (
    SELECT json_build_array(event, rid, detail, extra) AS item FROM events
), notified AS (
    {notify_items}
)
SELECT (SELECT count(*) FROM requeued) AS requeued,
       (SELECT count(*) FROM archived) AS failed,
       (SELECT count(*) FROM notified) AS notifications;

-- name: requeue_abandoned
-- A worker that gives up on attempts still running when its shutdown timeout
-- ran out puts them back at once, each charged a crash (it was running), but
-- never fails a job for it: orchestrators stop workers on every deploy.
WITH requeued AS (
    UPDATE {schema}.job AS j
    SET status = 'QUEUED',
        worker_rid = NULL,
        rescues = j.rescues + 1,
        crashes = j.crashes + 1,
        error = format('worker %%s shut down while attempt %%s was running; the job was put back',
                       j.worker_rid, j.attempts),
        updated_at = now()
    FROM unnest(%(ids)s::bigint[], %(attempts)s::integer[]) AS a(id, attempt)
    WHERE j.id = a.id AND j.attempts = a.attempt AND j.worker_rid = %(worker_rid)s
    RETURNING j.rid, j.task_name
), items AS (
    SELECT json_build_array('retry', rid, task_name, 'QUEUED') AS item FROM requeued
), notified AS (
    {notify_items}
)
SELECT (SELECT count(*) FROM requeued) AS requeued, (SELECT count(*) FROM notified) AS notified;

-- name: get_job
SELECT * FROM {schema}.job WHERE rid = %(rid)s;

-- name: get_job_by_unique_key
SELECT * FROM {schema}.job WHERE unique_key = %(unique_key)s;

-- name: get_job_ended
SELECT * FROM {schema}.job_archive WHERE rid = %(rid)s;

-- name: get_job_status_anywhere
SELECT status FROM {schema}.job WHERE rid = %(rid)s
UNION ALL
SELECT status FROM {schema}.job_archive WHERE rid = %(rid)s
LIMIT 1;

-- name: get_jobs
-- Keyset pagination on id: pass the last id seen as after_id.
SELECT * FROM {schema}.job
WHERE (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(task_name)s::text IS NULL OR task_name = %(task_name)s)
  AND (%(worker_rid)s::uuid IS NULL OR worker_rid = %(worker_rid)s)
  AND (%(after_id)s::bigint IS NULL OR id > %(after_id)s)
ORDER BY id
LIMIT %(limit)s OFFSET %(offset)s;

-- name: get_jobs_ended
SELECT * FROM {schema}.job_archive
WHERE (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(task_name)s::text IS NULL OR task_name = %(task_name)s)
  AND (%(worker_rid)s::uuid IS NULL OR worker_rid = %(worker_rid)s)
  AND (%(after_id)s::bigint IS NULL OR id > %(after_id)s)
ORDER BY id
LIMIT %(limit)s OFFSET %(offset)s;

-- name: get_jobs_newest
-- queuerPy's pages: newest first, each page after the last id of the one before.
SELECT * FROM {schema}.job
WHERE (%(worker_rid)s::uuid IS NULL OR worker_rid = %(worker_rid)s)
  AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s)
ORDER BY id DESC
LIMIT %(limit)s;

-- name: get_jobs_ended_newest
SELECT * FROM {schema}.job_archive
WHERE (%(worker_rid)s::uuid IS NULL OR worker_rid = %(worker_rid)s)
  AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s)
ORDER BY id DESC
LIMIT %(limit)s;

-- name: count_jobs_by_task_and_status
-- The queue's depth: what metrics, the dashboard and the web overview show.
SELECT task_name, status, count(*) AS n FROM {schema}.job GROUP BY task_name, status ORDER BY task_name, status

-- name: transaction_start
-- now() is the transaction's start: the value a DEFAULT gives the rows a COPY writes.
SELECT now() AS now

-- name: copy_jobs
-- The columns in the order copy_format.copy_chunks writes them.
COPY {schema}.job (rid, task_name, parameters, parameters_keyed, options, priority, status, scheduled_at,
                   max_attempts, timeout_seconds, unique_key, origin_rid, schedule_count, serial_key,
                   arguments_enc, crash_budget, workflow_id, depends_on, waiting_for, dependents, group_key) FROM STDIN

-- name: count_archived
SELECT count(*) AS n FROM {schema}.job_archive

-- name: refuse_completion
-- Aborts the caller's transaction: an attempt that no longer holds its job must not commit its work.
DO $refuse$ BEGIN
    RAISE EXCEPTION 'queuer: this attempt no longer holds its job (rescued, cancelled or timed out): its completion and this transaction cannot commit';
END $refuse$
