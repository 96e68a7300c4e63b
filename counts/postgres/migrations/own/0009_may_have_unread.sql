-- The counts query costs O(conversations with something unread), not O(memberships) (issue 20):
-- a member carries may_have_unread, true whenever they have (or may have) an unread message in
-- the conversation, and a partial index holds only those rows (and the marked-unread ones), so a
-- user in 10,000 conversations with news in one reads a handful of index entries.
--
-- The invariant is one-sided (DESIGN.md invariant 17): never false while the member has an unread
-- message. A true on a caught-up member is harmless (the counts query filters unread > 0; it
-- costs one probe), so the default is true: a row inserted by anything that does not know the
-- flag (a join by an old worker during a rolling deploy, a hand-made seed) is counted as before;
-- an old worker's message does not set it, hence the repair in docs/operations.md. The writes
-- keep it under the conversation's row lock: a message sets it for the members who were caught up
-- (only those rows are written: amortized one write per read-to-the-end), a read sets it to
-- whether anything is left after the new position, mark-unread-from sets it, a join and a new
-- conversation clear it.

ALTER TABLE conversation_members ADD COLUMN may_have_unread boolean NOT NULL DEFAULT true;

UPDATE conversation_members m SET may_have_unread = false
FROM conversations c
WHERE c.id = m.conversation_id AND m.last_read_seq >= c.last_seq;

-- The columns ENTRY reads of a membership: the counts query stays an index-only scan over the
-- user's rows that may count. The old index on every membership served only the counts query:
-- dropped, since every index is written by the message path's flag updates.
CREATE INDEX conversation_members_unread_by_user ON conversation_members (user_id)
    INCLUDE (conversation_id, last_read_seq, unread_mentions, marked_unread, notify)
    WHERE may_have_unread OR marked_unread;

DROP INDEX conversation_members_by_user;
