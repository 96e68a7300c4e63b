-- push(alert, badge, conversation_id): queue push jobs in the caller's transaction (DESIGN.md
-- invariant 12). The one definition of what a count-changing write records for push: our own
-- writes call it (counts.queries.push.enqueue_jobs), and in attached mode the app's triggers call
-- counts.push() beside counts.bump(), so the two modes cannot drift.
--
-- `alert`: users with a new message (an alert push); `badge`: users whose total changed
-- otherwise (read elsewhere, left, deleted: a badge-only push). A user in both is alerted; NULLs
-- are ignored. `conversation_id`: the conversation that changed, if one did. Only users with a
-- device get a job, and a device pushed within its coalescing window holds the job until the
-- window ends (push_devices.hold_until): the burst that follows a push becomes one push at the
-- window's end, with the latest total. Wakes the dispatchers if it queued something; Postgres
-- delivers the notification only if the transaction commits, and a rollback takes the jobs with
-- it. Returns how many jobs it queued.
--
-- Written once for both modes, unqualified, like the push tables (see counts/migrations): the
-- migration runs with only its mode's schema on the search_path, then pg_temp (public, pg_temp
-- in own mode; counts, pg_temp in attached mode), and SET search_path FROM CURRENT pins that path
-- on the function when it is created. So, with pg_catalog searched first as always, an
-- unqualified table here can only be our own, never a caller's temporary table. Functions and
-- aggregates are qualified with pg_catalog: one of a closer argument type created in a schema
-- on the path (public is writable by everyone before Postgres 15) would otherwise win.
--
-- SECURITY DEFINER: a trigger or a job calling it needs no privilege on the push tables, only
-- EXECUTE, which no role has until the operator grants it (README: "Attach to your own
-- database"). In own mode counts itself, the owner, is the only caller.
CREATE FUNCTION push(alert uuid[], badge uuid[] DEFAULT '{}', conversation_id uuid DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path FROM CURRENT
AS $$
DECLARE
    queued integer;
BEGIN
    -- The parameters are named for callers (named notation); inside, every column is qualified
    -- by its table and every parameter by the function's name, so neither hides the other.
    INSERT INTO push_jobs (user_id, alert, conversation_id, due_at)
    SELECT t.user_id, t.alert, push.conversation_id,
           greatest(pg_catalog.clock_timestamp(), d.hold_until)
    FROM (SELECT u.user_id, pg_catalog.bool_or(u.alert) AS alert
          FROM (SELECT a, true FROM pg_catalog.unnest(push.alert) a
                UNION ALL
                SELECT b, false FROM pg_catalog.unnest(push.badge) b) u (user_id, alert)
          WHERE u.user_id IS NOT NULL
          GROUP BY u.user_id) t
    -- One probe of push_devices_by_user per user (index-only): no device, no row.
    CROSS JOIN LATERAL (SELECT pg_catalog.max(pd.hold_until) AS hold_until
                        FROM push_devices pd WHERE pd.user_id = t.user_id
                        HAVING pg_catalog.count(*) > 0) d;
    GET DIAGNOSTICS queued = ROW_COUNT;
    IF queued > 0 THEN
        -- A wake-up only, the jobs are the truth; Postgres folds a transaction's identical
        -- notifications into one, however many statements queued jobs.
        PERFORM pg_catalog.pg_notify('counts_push', '');
    END IF;
    RETURN queued;
END
$$;

REVOKE ALL ON FUNCTION push(uuid[], uuid[], uuid) FROM PUBLIC;
