-- What chat apps show beside unread: mentions, notify levels, mark-as-unread, threads (issue 19).
--
-- Mentions are stored per message and user (message_mentions) or as a flag on the message
-- (mentions_all), never as a counter: a read pointer moved back, a deleted message or a join
-- then count exactly, with no recount code. Two fences keep the read O(memberships) for a user
-- with nothing mentioned: conversation_members.last_mention_seq (the newest personal mention of
-- that member) and conversations.last_mention_all_seq (the newest mention of everyone); the
-- counts query probes mentions only where a fence is past the member's read position.

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
    ADD COLUMN last_mention_seq bigint NOT NULL DEFAULT 0;

-- The counts query reads these of every membership: keep it an index-only scan.
DROP INDEX conversation_members_by_user;
CREATE INDEX conversation_members_by_user ON conversation_members (user_id)
    INCLUDE (conversation_id, last_read_seq, last_mention_seq, marked_unread, notify);

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
