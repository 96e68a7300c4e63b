-- A dispatcher round leases its users instead of holding a transaction open while the providers
-- answer (DESIGN.md invariant 12): it leases and commits, pushes with no transaction open, then
-- records the outcomes and ends the lease in a second, short transaction.
--
-- One row per user a round holds: no other dispatcher takes that user's jobs until `until`, not
-- even jobs written after the lease (a row lock on the jobs could not say that). A round that
-- records deletes its rows; a dispatcher that died leaves them to expire, and its jobs, still
-- queued, are pushed again by the next round after that (at least once).
--
-- Written once for both modes, unqualified, like the other push tables (see counts/migrations).
CREATE TABLE push_leases (
    user_id uuid        PRIMARY KEY,
    -- The round holding it: a late round, whose lease another has taken since, ends none but its own.
    holder  uuid        NOT NULL,
    until   timestamptz NOT NULL
);
