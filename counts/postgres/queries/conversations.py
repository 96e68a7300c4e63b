"""Count-changing writes of our own schema: conversations, members, messages, read state."""

from uuid import UUID

INSERT_CONVERSATION = "INSERT INTO conversations (id, parent_id, root_seq) VALUES (%s, %s, %s)"

# Thread members start at `mentions`: a followed thread shows as unread but adds only its
# mentions to the badge (Mattermost's collapsed threads); top-level members at `all`.
# A new conversation has no message: nobody may have unread (invariant 17).
INSERT_MEMBERS = """
INSERT INTO conversation_members (conversation_id, user_id, notify, may_have_unread)
SELECT %(conversation_id)s, unnest(%(user_ids)s::uuid[]), %(notify)s, false
"""

# A thread hangs under a top-level conversation (one level: a thread of a thread is refused);
# its key share lock keeps the parent from being deleted under the new thread.
PARENT = "SELECT last_seq, parent_id FROM conversations WHERE id = %s FOR KEY SHARE"

# A conversation's threads, locked in id order before its delete: a reply in a thread locks the
# thread, then its member's row; taking the threads first keeps the delete from deadlocking it.
LOCK_THREADS = "SELECT id FROM conversations WHERE parent_id = %s ORDER BY id FOR NO KEY UPDATE"

# Locks the conversation row: a join must not slip between a message's seq and its bump list.
LOCK_CONVERSATION = "SELECT last_seq FROM conversations WHERE id = %s FOR NO KEY UPDATE"

# A joiner starts with nothing unread: history before the join is not news to them. `last_seq`
# was read under the conversation's lock, so no message can land between it and this row.
JOIN = """
INSERT INTO conversation_members (conversation_id, user_id, last_read_seq, notify, may_have_unread)
SELECT c.id, %(user_id)s, %(last_seq)s, CASE WHEN c.parent_id IS NULL THEN 'all' ELSE 'mentions' END,
       false
FROM conversations c WHERE c.id = %(conversation_id)s
ON CONFLICT (conversation_id, user_id) DO NOTHING
"""

LEAVE = "DELETE FROM conversation_members WHERE conversation_id = %s AND user_id = %s"

# Its threads' members too: the threads go with it (ON DELETE CASCADE), and so do their counts.
DELETE_CONVERSATION_MEMBERS = """
DELETE FROM conversation_members
WHERE conversation_id IN (SELECT id FROM conversations WHERE id = %(id)s OR parent_id = %(id)s)
RETURNING user_id
"""

DELETE_CONVERSATION = "DELETE FROM conversations WHERE id = %s"

MEMBER_IDS = "SELECT user_id FROM conversation_members WHERE conversation_id = %s"

MEMBER_LEVELS = "SELECT user_id, notify FROM conversation_members WHERE conversation_id = %s"


def create_conversation(cur, conversation_id: UUID, member_ids: list[UUID],
                        parent_id: UUID | None = None, root_seq: int | None = None) -> None:
    """Insert a conversation (a thread of `parent_id`, if given) and its members."""
    cur.execute(INSERT_CONVERSATION, (str(conversation_id),
                                      None if parent_id is None else str(parent_id), root_seq))
    cur.execute(INSERT_MEMBERS, {"conversation_id": str(conversation_id),
                                 "user_ids": [str(uid) for uid in member_ids],
                                 "notify": "all" if parent_id is None else "mentions"})


def parent(cur, conversation_id: UUID) -> tuple[int, UUID | None] | None:
    """A would-be parent's (last_seq, own parent_id), key-share locked, or None if it is missing."""
    cur.execute(PARENT, (str(conversation_id),))
    return cur.fetchone()


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
    """Delete a conversation with its messages and threads; the members they had."""
    cur.execute(LOCK_THREADS, (str(conversation_id),))
    cur.execute(DELETE_CONVERSATION_MEMBERS, {"id": str(conversation_id)})
    members = list(dict.fromkeys(row[0] for row in cur.fetchall()))
    cur.execute(DELETE_CONVERSATION, (str(conversation_id),))
    return members


def member_ids(cur, conversation_id: UUID) -> list[UUID]:
    """Every member of a conversation."""
    cur.execute(MEMBER_IDS, (str(conversation_id),))
    return [row[0] for row in cur.fetchall()]


def member_levels(cur, conversation_id: UUID) -> dict[str, str]:
    """Every member of a conversation (id as text) with their notify level."""
    cur.execute(MEMBER_LEVELS, (str(conversation_id),))
    return {str(user_id): notify for user_id, notify in cur.fetchall()}


# Also flags the members who were caught up as may_have_unread (invariant 17): a trigger of
# migrations/own/0009 does, so that every writer's message does, whatever its version.
NEXT_SEQ = "UPDATE conversations SET last_seq = last_seq + 1 WHERE id = %s RETURNING last_seq"

MEMBER_READ_STATE = """
SELECT last_read_seq, marked_unread FROM conversation_members
WHERE conversation_id = %s AND user_id = %s FOR UPDATE
"""

INSERT_MESSAGE = """
INSERT INTO messages (conversation_id, seq, id, sender_id, body, mentions_all)
VALUES (%s, %s, %s, %s, %s, %s)
"""

# The mentioned members' counts and fences move with their rows (see migrations/own/0006): a
# new message is unread for every member it names (their read position is before its seq).
INSERT_MENTIONS = """
WITH mentioned AS (
    INSERT INTO message_mentions (user_id, conversation_id, seq)
    SELECT unnest(%(user_ids)s::uuid[]), %(conversation_id)s, %(seq)s
    RETURNING user_id
)
UPDATE conversation_members m
SET last_mention_seq = %(seq)s, unread_mentions = m.unread_mentions + 1
FROM mentioned WHERE m.conversation_id = %(conversation_id)s AND m.user_id = mentioned.user_id
"""

# A member's unread personal mentions after their read position moves to `position` (an SQL
# expression over the row's old values): recounted from message_mentions, only where the
# member's newest mention is past it.
RECOUNT_MENTIONS = """CASE WHEN m.last_mention_seq > {position} THEN (
        SELECT count(*) FROM message_mentions x
        WHERE x.user_id = m.user_id AND x.conversation_id = m.conversation_id
          AND x.seq > {position}) ELSE 0 END"""

MENTION_ALL = "UPDATE conversations SET last_mention_all_seq = %s WHERE id = %s"

# GREATEST: several devices mark read concurrently; read state never moves backwards.
# LEAST: a client cannot mark as read what has not been sent yet.
# A read clears a mark-as-unread flag (MSC2867: "mark read" is the receipt and the flag off).
# may_have_unread: whether anything is left after the new position. Every caller holds the
# conversation's row lock from an earlier statement (NEXT_SEQ, LOCK_CONVERSATION), so this
# statement's snapshot reads the locked last_seq, and no message can land before commit.
_READ_POSITION = "GREATEST(m.last_read_seq, LEAST(COALESCE(%(up_to_seq)s, c.last_seq), c.last_seq))"
MARK_READ = f"""
UPDATE conversation_members m
SET last_read_seq = {_READ_POSITION},
    unread_mentions = {RECOUNT_MENTIONS.format(position=_READ_POSITION)},
    marked_unread = false,
    may_have_unread = {_READ_POSITION} < c.last_seq
FROM conversations c
WHERE c.id = m.conversation_id AND m.conversation_id = %(conversation_id)s
  AND m.user_id = %(user_id)s
RETURNING m.last_read_seq, (m.last_read_seq IS DISTINCT FROM %(before)s) AS changed
"""  # noqa: S608 - composed of this module's constants

# The conversation's last_deleted_seq moves in the same statement: the counts query trusts it
# to say whether a reader's unread gap can hold a deleted message. The message's mentions go with
# it (a mention of everyone stops counting by deleted_at).
DELETE_MESSAGE = """
WITH deleted AS (
    UPDATE messages SET deleted_at = now(), body = ''
    WHERE conversation_id = %(conversation_id)s AND id = %(message_id)s AND deleted_at IS NULL
    RETURNING conversation_id, seq, mentions_all
), unmentioned AS (
    DELETE FROM message_mentions x USING deleted
    WHERE x.conversation_id = deleted.conversation_id AND x.seq = deleted.seq
    RETURNING x.user_id
), uncounted AS (
    UPDATE conversation_members m SET unread_mentions = m.unread_mentions - 1
    FROM deleted, unmentioned u
    WHERE m.conversation_id = deleted.conversation_id AND m.user_id = u.user_id
      AND m.last_read_seq < deleted.seq
)
UPDATE conversations c SET last_deleted_seq = GREATEST(c.last_deleted_seq, deleted.seq)
FROM deleted WHERE c.id = deleted.conversation_id
RETURNING deleted.seq, deleted.mentions_all, ARRAY(SELECT user_id::text FROM unmentioned)
"""

# Whom a deleted message was unread for (their read position before it), with their level and
# whether it mentioned them: exactly the members whose counts the delete changed.
UNREAD_BY = """
SELECT user_id, notify FROM conversation_members
WHERE conversation_id = %(conversation_id)s AND last_read_seq < %(seq)s
"""

MESSAGE_EXISTS = "SELECT 1 FROM messages WHERE conversation_id = %s AND id = %s"


def next_seq(cur, conversation_id: UUID) -> int | None:
    """Take the next sequence number (locking the conversation), or None if it does not exist."""
    cur.execute(NEXT_SEQ, (str(conversation_id),))
    row = cur.fetchone()
    return None if row is None else row[0]


def read_state(cur, conversation_id: UUID, user_id: UUID) -> tuple[int, bool] | None:
    """Lock a member's read state: (last_read_seq, marked_unread), or None if not a member."""
    cur.execute(MEMBER_READ_STATE, (str(conversation_id), str(user_id)))
    row = cur.fetchone()
    return None if row is None else (row[0], row[1])


def insert_message(cur, conversation_id: UUID, seq: int, message_id: UUID, sender_id: UUID,
                   body: str, mentions_all: bool = False) -> None:
    """Store a message at its sequence number."""
    cur.execute(INSERT_MESSAGE, (str(conversation_id), seq, str(message_id), str(sender_id), body,
                                 mentions_all))
    if mentions_all:
        cur.execute(MENTION_ALL, (seq, str(conversation_id)))


def insert_mentions(cur, conversation_id: UUID, seq: int, user_ids: list[str]) -> None:
    """Record the members a message mentions by name."""
    cur.execute(INSERT_MENTIONS, {"conversation_id": str(conversation_id), "seq": seq,
                                  "user_ids": user_ids})


def mark_read(cur, conversation_id: UUID, user_id: UUID, up_to_seq: int | None,
              before: int) -> tuple[int, bool]:
    """Move a member's read state forward; (new last_read_seq, whether it moved)."""
    cur.execute(MARK_READ, {"conversation_id": str(conversation_id), "user_id": str(user_id),
                            "up_to_seq": up_to_seq, "before": before})
    last_read_seq, changed = cur.fetchone()
    return last_read_seq, changed


def delete_message(cur, conversation_id: UUID,
                   message_id: UUID) -> tuple[str, tuple[int, bool, list[str]] | None]:
    """Soft-delete a message: ('deleted', (its seq, whether it mentioned everyone, the members
    it named)), or ('already', None) (deleted before) or ('missing', None)."""
    cur.execute(DELETE_MESSAGE, {"conversation_id": str(conversation_id),
                                 "message_id": str(message_id)})
    row = cur.fetchone()
    if row is not None:
        return "deleted", (row[0], row[1], row[2])
    cur.execute(MESSAGE_EXISTS, (str(conversation_id), str(message_id)))
    return ("already" if cur.fetchone() else "missing"), None


def unread_by(cur, conversation_id: UUID, seq: int) -> dict[UUID, str]:
    """The members a message at `seq` is unread for, with their notify levels."""
    cur.execute(UNREAD_BY, {"conversation_id": str(conversation_id), "seq": seq})
    return dict(cur.fetchall())
