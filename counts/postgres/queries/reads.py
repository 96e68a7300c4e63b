"""Reads: the unread counts of one user or many, and the readiness ping."""

from collections.abc import Iterable
from typing import Any
from uuid import UUID

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
    return counts_by_user(cur, UNREAD_COUNTS, user_ids)


def counts_by_user(cur, statement, user_ids: Iterable[UUID]) -> dict[UUID, dict]:
    """Run a counts statement (rows of user_id text, conversation_id text, unread; parameter
    user_ids) and fold its rows into each user's counts, users without rows included."""
    users = list(user_ids)
    result: dict[UUID, dict[str, Any]] = {
        uid: {"total": 0, "unread_conversations": 0, "conversations": []} for uid in users}
    by_text = {str(uid): result[uid] for uid in users}
    cur.execute(statement, {"user_ids": list(by_text)})
    for user_id, conversation_id, unread in cur.fetchall():
        counts = by_text[user_id]
        counts["total"] += unread
        counts["unread_conversations"] += 1
        counts["conversations"].append({"conversation_id": conversation_id, "unread": unread})
    return result


def ping(cur) -> None:
    """Prove the database answers."""
    cur.execute(PING)
