-- counts.bump(user_ids): what the app's triggers (or any SQL writer) call inside the writing
-- transaction. It records the users in the outbox and wakes the relay with a notification.
-- Postgres delivers a notification only once its transaction commits, and a rollback takes the
-- outbox row with it: a marker moves only after a commit (invariant 1), and a rolled-back write
-- bumps nobody.
--
-- SECURITY DEFINER: a caller needs no privilege on the outbox, only EXECUTE on this function,
-- which no role has until the operator grants it (README: "Attach to your own database"). The
-- search_path is pinned with pg_temp last, and every name is qualified: a caller's own objects
-- (a temporary table called marker_outbox, a function in their schema) cannot stand in for ours.
--
-- Room to grow (push): the outbox row can take more nullable columns (the conversation that
-- changed, the users to alert rather than only re-badge) filled by an overload with more
-- arguments and no defaults, so that counts.bump(uuid[]) keeps its meaning and its grants.
CREATE FUNCTION counts.bump(user_ids uuid[]) RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, counts, pg_temp
AS $$
BEGIN
    user_ids := pg_catalog.array_remove(user_ids, NULL);
    IF pg_catalog.cardinality(user_ids) > 0 THEN
        INSERT INTO counts.marker_outbox (user_ids) VALUES (user_ids);
        -- A wake-up only, without a payload: the outbox is the truth. Postgres folds identical
        -- notifications of one transaction into one, however many rows its triggers bumped.
        PERFORM pg_catalog.pg_notify('counts_bumps', '');
    END IF;
END
$$;

REVOKE ALL ON FUNCTION counts.bump(uuid[]) FROM PUBLIC;
