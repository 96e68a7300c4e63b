-- Push for apps in the background (DESIGN.md invariant 12).
--
-- push_devices: where a user's pushes go. A token (a Web Push endpoint URL, an APNs device token,
-- an FCM registration token) belongs to one app install, hence to one user at a time.
-- push_jobs: written by the count-changing write in its own transaction, one row per user to tell;
-- the dispatcher claims due rows (FOR UPDATE SKIP LOCKED), pushes the user's *current* counts, and
-- deletes them in the same transaction, so a dispatcher killed mid-batch leaves them for the next.

CREATE TABLE push_devices (
    id            uuid        PRIMARY KEY,
    user_id       uuid        NOT NULL,
    platform      text        NOT NULL CHECK (platform IN ('webpush', 'apns', 'fcm')),
    token         text        NOT NULL,
    -- webpush: {"p256dh", "auth"}; apns: {"topic", "environment"}; fcm: {}
    settings      jsonb       NOT NULL DEFAULT '{}',
    registered_at timestamptz NOT NULL DEFAULT now(),
    -- Coalescing: a push sent at t holds this device's next one until t + COUNTS_PUSH_COALESCE.
    hold_until    timestamptz NOT NULL DEFAULT '-infinity',
    UNIQUE (platform, token)
);

-- Writers probe it per user they change (has a device? held until?); index-only.
CREATE INDEX push_devices_by_user ON push_devices (user_id) INCLUDE (hold_until);

CREATE TABLE push_jobs (
    id              bigserial   PRIMARY KEY,
    user_id         uuid        NOT NULL,
    -- A new message (an alert); false: only the badge changed (read elsewhere, left, deleted).
    alert           boolean     NOT NULL,
    conversation_id uuid,
    -- NULL: every device of the user. Set: a retry, for that device only.
    device_id       uuid,
    attempts        integer     NOT NULL DEFAULT 0,
    -- When the write made it (a retry keeps it): latency and COUNTS_PUSH_MAX_AGE count from here.
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    due_at          timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX push_jobs_due ON push_jobs (due_at);
CREATE INDEX push_jobs_by_user ON push_jobs (user_id);
