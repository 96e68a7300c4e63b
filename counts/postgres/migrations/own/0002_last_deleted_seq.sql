-- The counts query subtracts deleted messages in each unread gap, one probe of messages_deleted
-- per membership. Most conversations have no deleted message after the reader's position: with
-- the highest deleted seq on the conversation, the query probes only where one may be
-- (last_deleted_seq > last_read_seq). Message deletes keep it (soft deletes never undo).

ALTER TABLE conversations ADD COLUMN last_deleted_seq bigint NOT NULL DEFAULT 0;

UPDATE conversations c SET last_deleted_seq = d.seq
FROM (SELECT conversation_id, max(seq) AS seq FROM messages
      WHERE deleted_at IS NOT NULL GROUP BY conversation_id) d
WHERE c.id = d.conversation_id;
