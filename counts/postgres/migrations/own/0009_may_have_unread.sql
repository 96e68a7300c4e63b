-- The counts query costs O(conversations with something unread), not O(memberships) (issue 20):
-- a member carries may_have_unread, true whenever they have (or may have) an unread message in
-- the conversation, and a partial index holds only those rows (and the marked-unread ones), so a
-- user in 10,000 conversations with news in one reads a handful of index entries.
--
-- The invariant is one-sided (DESIGN.md invariant 17): never false while the member has an unread
-- message. A true on a caught-up member is harmless (the counts query filters unread > 0; it
-- costs one probe), so the default is true: a row inserted by anything that does not know the
-- flag (a join by an older worker during a rolling deploy, a hand-made seed) is counted as before.
-- What makes a member's unread appear is set here, by triggers, whoever writes: a message (the
-- conversation's last_seq moving up) flags the members who were caught up (only those rows are
-- written: amortized one write per read-to-the-end), and a read pointer moved back flags its
-- member; so an older worker's message during a rolling deploy flags as a new one does. The
-- service's writes clear it, under the conversation's row lock: a read sets it to whether
-- anything is left after the new position, a join and a new conversation start without it.

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

-- A message: every member who was caught up may now have something unread. AFTER the
-- conversation's row is updated, so under its row lock, in the message's transaction. The sender
-- is flagged too (the trigger cannot tell them apart); their own read, later in the same
-- transaction, clears it.
CREATE FUNCTION conversations_flag_members() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE conversation_members SET may_have_unread = true
    WHERE conversation_id = NEW.id AND NOT may_have_unread;
    RETURN NULL;
END
$$;

CREATE TRIGGER conversations_flag_members AFTER UPDATE OF last_seq ON conversations
    FOR EACH ROW WHEN (NEW.last_seq > OLD.last_seq) EXECUTE FUNCTION conversations_flag_members();

-- A read pointer moved back (mark unread from a message) leaves a message after it.
CREATE FUNCTION conversation_members_flag_moved_back() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.may_have_unread := true;
    RETURN NEW;
END
$$;

CREATE TRIGGER conversation_members_flag_moved_back BEFORE UPDATE OF last_read_seq
    ON conversation_members FOR EACH ROW
    WHEN (NEW.last_read_seq < OLD.last_read_seq AND NOT NEW.may_have_unread)
    EXECUTE FUNCTION conversation_members_flag_moved_back();
