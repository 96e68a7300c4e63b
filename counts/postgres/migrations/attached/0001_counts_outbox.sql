-- COUNTS_SOURCE=attached: counts keeps its own objects in the schema `counts` (created by
-- `db upgrade`, which runs this with search_path = counts), never among the app's tables.

-- The bump outbox, as in own mode (own/0001_initial.sql): counts.bump() records the users to bump
-- in the writing transaction; after commit the relay (or, if it missed the wake-up, the drainer)
-- bumps them in Redis and deletes the row. A row outlives a Redis outage (invariant 6).
CREATE TABLE counts.marker_outbox (
    id         bigserial   PRIMARY KEY,
    user_ids   uuid[]      NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
