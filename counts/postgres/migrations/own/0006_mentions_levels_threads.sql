-- What chat apps show beside unread: mentions, notify levels, mark-as-unread, threads (issue 19).
--
-- Mentions are stored per message and user (message_mentions) or as a flag on the message
-- (mentions_all): a read pointer moved back, a deleted message or a join count exactly from
-- them. A member's unread personal mentions are also kept on their row (unread_mentions), set
-- from those rows by every write that moves the pointer, added to by a mention and taken from by
-- a delete, all under the conversation's lock, so the counts query reads it instead of probing
-- (a probe per conversation cost 1.3-1.4x the read at 1,000 memberships). Fences keep the rest
-- O(memberships): conversation_members.last_mention_seq (the member's newest personal mention:
-- a pointer move recounts only past it) and conversations.last_mention_all_seq (the newest
-- mention of everyone: the counts query probes those only where it is past the read position).

ALTER TABLE conversations
    ADD COLUMN last_mention_all_seq bigint NOT NULL DEFAULT 0,
    -- A thread is a conversation of its own under a top-level one: its replies never add to the
    -- parent's unread, and deleting the parent deletes its threads.
    ADD COLUMN parent_id uuid REFERENCES conversations (id) ON DELETE CASCADE,
    ADD COLUMN root_seq bigint CHECK (root_seq > 0);

CREATE INDEX conversations_threads ON conversations (parent_id) WHERE parent_id IS NOT NULL;

ALTER TABLE conversation_members
    ADD COLUMN notify text NOT NULL DEFAULT 'all' CHECK (notify IN ('all', 'mentions', 'none')),
    ADD COLUMN marked_unread boolean NOT NULL DEFAULT false,
    ADD COLUMN last_mention_seq bigint NOT NULL DEFAULT 0,
    ADD COLUMN unread_mentions bigint NOT NULL DEFAULT 0 CHECK (unread_mentions >= 0);

-- The counts query reads these of every membership: keep it an index-only scan.
DROP INDEX conversation_members_by_user;
CREATE INDEX conversation_members_by_user ON conversation_members (user_id)
    INCLUDE (conversation_id, last_read_seq, unread_mentions, marked_unread, notify);

ALTER TABLE messages ADD COLUMN mentions_all boolean NOT NULL DEFAULT false;

CREATE INDEX messages_mentioning_all ON messages (conversation_id, seq)
    WHERE mentions_all AND deleted_at IS NULL;

-- Rows go with their message: a delete removes them (DELETE_MESSAGE), so does the conversation's.
CREATE TABLE message_mentions (
    user_id         uuid   NOT NULL,
    conversation_id uuid   NOT NULL,
    seq             bigint NOT NULL,
    PRIMARY KEY (user_id, conversation_id, seq),
    FOREIGN KEY (conversation_id, seq) REFERENCES messages (conversation_id, seq) ON DELETE CASCADE
);

CREATE INDEX message_mentions_by_message ON message_mentions (conversation_id, seq);
