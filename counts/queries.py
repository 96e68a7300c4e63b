"""Every SQL statement the service sends, and the small functions that send them.

Functions take a cursor and know nothing of Flask, so tests and other services can call them.
"""

from collections.abc import Iterable
from uuid import UUID

# --- reads -------------------------------------------------------------------------------------

# One statement for one user or many, costing O(the users' memberships): their rows in
# conversation_members_by_user, one primary-key probe of conversations each, and a probe of the
# (small) deleted-messages index only where the conversation has a deleted message after the
# member's read position (last_deleted_seq, kept by DELETE_MESSAGE). The OFFSET 0 fences keep it
# that way: without them the planner hash-joins a full scan of conversations once a user has
# ~1,000 memberships (O(all conversations): 10-16 ms at 50,000), and evaluates the deleted count
# twice.
# Ids come back as text: they go straight into JSON, and uuid.UUID objects cost more than the
# query on a big user.
UNREAD_COUNTS = """
SELECT user_id, conversation_id, unread FROM (
    SELECT m.user_id::text, m.conversation_id::text,
           c.last_seq - m.last_read_seq - CASE WHEN c.last_deleted_seq > m.last_read_seq THEN (
               SELECT count(*) FROM messages d
               WHERE d.conversation_id = m.conversation_id
                 AND d.deleted_at IS NOT NULL AND d.seq > m.last_read_seq
           ) ELSE 0 END AS unread
    FROM conversation_members m
    CROSS JOIN LATERAL (SELECT last_seq, last_deleted_seq FROM conversations
                        WHERE id = m.conversation_id OFFSET 0) c
    WHERE m.user_id = ANY(%(user_ids)s::uuid[]) AND c.last_seq > m.last_read_seq
    OFFSET 0
) counted
WHERE unread > 0
ORDER BY user_id, conversation_id
"""

PING = "SELECT 1"


def unread_counts(cur, user_ids: Iterable[UUID]) -> dict[UUID, dict]:
    """Unread counts for each user: {user_id: {"total", "unread_conversations", "conversations"}}."""
    user_ids = list(user_ids)
    result = {uid: {"total": 0, "unread_conversations": 0, "conversations": []} for uid in user_ids}
    by_text = {str(uid): result[uid] for uid in user_ids}
    cur.execute(UNREAD_COUNTS, {"user_ids": list(by_text)})
    for user_id, conversation_id, unread in cur.fetchall():
        counts = by_text[user_id]
        counts["total"] += unread
        counts["unread_conversations"] += 1
        counts["conversations"].append({"conversation_id": conversation_id, "unread": unread})
    return result


def ping(cur) -> None:
    """Prove the database answers."""
    cur.execute(PING)


# --- conversations and members -----------------------------------------------------------------

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


# --- messages and read state -------------------------------------------------------------------

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


# --- marker outbox (DESIGN.md invariant 6) -----------------------------------------------------

ENQUEUE_BUMPS = "INSERT INTO marker_outbox (user_ids) VALUES (%s::uuid[]) RETURNING id"

FORGET_BUMPS = "DELETE FROM marker_outbox WHERE id = ANY(%s)"

# SKIP LOCKED: several workers drain at once without waiting on, or double-taking, each other.
CLAIM_BUMPS = """
SELECT id, user_ids FROM marker_outbox
WHERE created_at <= now() - make_interval(secs => %s)
ORDER BY id LIMIT %s
FOR UPDATE SKIP LOCKED
"""

PENDING_BUMPS = "SELECT count(*) FROM marker_outbox"


def enqueue_bumps(cur, user_ids: Iterable[UUID]) -> int:
    """Record, in the caller's transaction, users whose markers must be bumped after commit."""
    cur.execute(ENQUEUE_BUMPS, ([str(uid) for uid in user_ids],))
    return cur.fetchone()[0]


def forget_bumps(cur, outbox_ids: list[int]) -> None:
    """Delete outbox rows whose bumps reached Redis."""
    cur.execute(FORGET_BUMPS, (outbox_ids,))


def claim_bumps(cur, min_age_seconds: float, limit: int) -> list[tuple[int, list[UUID]]]:
    """Lock up to `limit` outbox rows older than `min_age_seconds`, for this transaction."""
    cur.execute(CLAIM_BUMPS, (min_age_seconds, limit))
    return [(row_id, users) for row_id, users in cur.fetchall()]


def pending_bumps(cur) -> int:
    """How many outbox rows wait for Redis."""
    cur.execute(PENDING_BUMPS)
    return cur.fetchone()[0]


# --- schema migrations -------------------------------------------------------------------------

CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text        PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""

# Two deploys upgrading at once must not both apply a migration: serialize on one advisory lock.
LOCK_MIGRATIONS = "SELECT pg_advisory_xact_lock(hashtext('counts.schema_migrations'))"

APPLIED_MIGRATIONS = "SELECT version FROM schema_migrations"

RECORD_MIGRATION = "INSERT INTO schema_migrations (version) VALUES (%s)"


def applied_migrations(cur) -> set[str]:
    """Lock migrations for this transaction and return the versions recorded as applied."""
    # Lock first: two upgrades racing on an empty database would both try to create the table.
    cur.execute(LOCK_MIGRATIONS)
    cur.execute(CREATE_MIGRATIONS_TABLE)
    cur.execute(APPLIED_MIGRATIONS)
    return {row[0] for row in cur.fetchall()}


def apply_migration(cur, version: str, sql: str) -> None:
    """Run one migration's SQL and record it, in the caller's transaction."""
    cur.execute(sql)
    cur.execute(RECORD_MIGRATION, (version,))
