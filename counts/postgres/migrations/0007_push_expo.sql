-- Expo as a fourth push platform, and the tickets whose receipts say what became of a push.
--
-- Expo answers a send with a ticket ("received"), and only later, in a receipt fetched by the
-- ticket's id, with what Apple or Google said. A ticket row lives from the send until its receipt
-- is read, or for 24 hours, after which Expo has forgotten it (it is then counted, not retried).
--
-- Written once for both modes, unqualified, like the other push tables (see counts/migrations).

ALTER TABLE push_devices DROP CONSTRAINT push_devices_platform_check;
ALTER TABLE push_devices ADD CONSTRAINT push_devices_platform_check
    CHECK (platform IN ('webpush', 'apns', 'fcm', 'expo'));

CREATE TABLE push_tickets (
    -- The provider's id of the ticket (Expo's receipt id).
    id         text        PRIMARY KEY,
    provider   text        NOT NULL,
    -- No foreign key: a device deleted meanwhile leaves its tickets to be read and dropped.
    device_id  uuid        NOT NULL,
    sent_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- When a dispatcher may ask for its receipt: COUNTS_EXPO_RECEIPT_DELAY after the send, moved
    -- on by whoever asks (so two dispatchers do not ask together, and a missing one waits).
    check_at   timestamptz NOT NULL
);

CREATE INDEX push_tickets_due ON push_tickets (check_at);
