"""Count-changing writes of our own schema: conversations, members, messages, read state."""

from uuid import UUID

INSERT_CONVERSATION = "INSERT INTO conversations (id) VALUES (%s)"

INSERT_MEMBERS = """
INSERT INTO conversation_members (conversation_id, user_id)
SELECT %(conversation_id)s, unnest(%(user_ids)s::uuid[])
"""

# Locks the conversation row: a join must not slip between a message's seq and its bump list.
LOCK_CONVERSATION = "SELECT last_seq FROM conversations WHERE id = %s FOR NO KEY UPDATE"

# A joiner starts with nothing unread: history before the join is not news to them.
JOIN = """
INSERT INTO conversation_members (conversation_id, user_id, last_read_seq)
VALUES (%(conversation_id)s, %(user_id)s, %(last_seq)s)
ON CONFLICT (conversation_id, user_id) DO NOTHING
"""

LEAVE = "DELETE FROM conversation_members WHERE conversation_id = %s AND user_id = %s"

DELETE_CONVERSATION_MEMBERS = """
DELETE FROM conversation_members WHERE conversation_id = %s RETURNING user_id
"""

DELETE_CONVERSATION = "DELETE FROM conversations WHERE id = %s"

MEMBER_IDS = "SELECT user_id FROM conversation_members WHERE conversation_id = %s"


def create_conversation(cur, conversation_id: UUID, member_ids: list[UUID]) -> None:
    """Insert a conversation and its members."""
    cur.execute(INSERT_CONVERSATION, (str(conversation_id),))
    cur.execute(INSERT_MEMBERS, {"conversation_id": str(conversation_id),
                                 "user_ids": [str(uid) for uid in member_ids]})


def lock_conversation(cur, conversation_id: UUID) -> int | None:
    """Lock a conversation against concurrent sends; its last_seq, or None if it does not exist."""
    cur.execute(LOCK_CONVERSATION, (str(conversation_id),))
    row = cur.fetchone()
    return None if row is None else row[0]


def join(cur, conversation_id: UUID, user_id: UUID, last_seq: int) -> bool:
    """Add a member; False if they were one already."""
    cur.execute(JOIN, {"conversation_id": str(conversation_id), "user_id": str(user_id),
                       "last_seq": last_seq})
    return cur.rowcount == 1


def leave(cur, conversation_id: UUID, user_id: UUID) -> bool:
    """Remove a member; False if they were not one."""
    cur.execute(LEAVE, (str(conversation_id), str(user_id)))
    return cur.rowcount == 1


def delete_conversation(cur, conversation_id: UUID) -> list[UUID]:
    """Delete a conversation with its messages; the members it had."""
    cur.execute(DELETE_CONVERSATION_MEMBERS, (str(conversation_id),))
    members = [row[0] for row in cur.fetchall()]
    cur.execute(DELETE_CONVERSATION, (str(conversation_id),))
    return members


def member_ids(cur, conversation_id: UUID) -> list[UUID]:
    """Every member of a conversation."""
    cur.execute(MEMBER_IDS, (str(conversation_id),))
    return [row[0] for row in cur.fetchall()]


NEXT_SEQ = "UPDATE conversations SET last_seq = last_seq + 1 WHERE id = %s RETURNING last_seq"

MEMBER_READ_STATE = """
SELECT last_read_seq FROM conversation_members
WHERE conversation_id = %s AND user_id = %s FOR UPDATE
"""

INSERT_MESSAGE = """
INSERT INTO messages (conversation_id, seq, id, sender_id, body) VALUES (%s, %s, %s, %s, %s)
"""

# GREATEST: several devices mark read concurrently; read state never moves backwards.
# LEAST: a client cannot mark as read what has not been sent yet.
MARK_READ = """
UPDATE conversation_members m
SET last_read_seq = GREATEST(m.last_read_seq, LEAST(COALESCE(%(up_to_seq)s, c.last_seq), c.last_seq))
FROM conversations c
WHERE c.id = m.conversation_id AND m.conversation_id = %(conversation_id)s
  AND m.user_id = %(user_id)s
RETURNING m.last_read_seq, (m.last_read_seq IS DISTINCT FROM %(before)s) AS changed
"""

# The conversation's last_deleted_seq moves in the same statement: the counts query trusts it
# to say whether a reader's unread gap can hold a deleted message.
DELETE_MESSAGE = """
WITH deleted AS (
    UPDATE messages SET deleted_at = now(), body = ''
    WHERE conversation_id = %(conversation_id)s AND id = %(message_id)s AND deleted_at IS NULL
    RETURNING conversation_id, seq
)
UPDATE conversations c SET last_deleted_seq = GREATEST(c.last_deleted_seq, deleted.seq)
FROM deleted WHERE c.id = deleted.conversation_id
RETURNING deleted.seq
"""

MESSAGE_EXISTS = "SELECT 1 FROM messages WHERE conversation_id = %s AND id = %s"


def next_seq(cur, conversation_id: UUID) -> int | None:
    """Take the next sequence number (locking the conversation), or None if it does not exist."""
    cur.execute(NEXT_SEQ, (str(conversation_id),))
    row = cur.fetchone()
    return None if row is None else row[0]


def read_state(cur, conversation_id: UUID, user_id: UUID) -> int | None:
    """Lock and return a member's last_read_seq, or None if they are not a member."""
    cur.execute(MEMBER_READ_STATE, (str(conversation_id), str(user_id)))
    row = cur.fetchone()
    return None if row is None else row[0]


def insert_message(cur, conversation_id: UUID, seq: int, message_id: UUID, sender_id: UUID,
                   body: str) -> None:
    """Store a message at its sequence number."""
    cur.execute(INSERT_MESSAGE, (str(conversation_id), seq, str(message_id), str(sender_id), body))


def mark_read(cur, conversation_id: UUID, user_id: UUID, up_to_seq: int | None,
              before: int) -> tuple[int, bool]:
    """Move a member's read state forward; (new last_read_seq, whether it moved)."""
    cur.execute(MARK_READ, {"conversation_id": str(conversation_id), "user_id": str(user_id),
                            "up_to_seq": up_to_seq, "before": before})
    last_read_seq, changed = cur.fetchone()
    return last_read_seq, changed


def delete_message(cur, conversation_id: UUID, message_id: UUID) -> str:
    """Soft-delete a message: 'deleted', 'already' (deleted before) or 'missing'."""
    cur.execute(DELETE_MESSAGE, {"conversation_id": str(conversation_id),
                                 "message_id": str(message_id)})
    if cur.fetchone() is not None:
        return "deleted"
    cur.execute(MESSAGE_EXISTS, (str(conversation_id), str(message_id)))
    return "already" if cur.fetchone() else "missing"
