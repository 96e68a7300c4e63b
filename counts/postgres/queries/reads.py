"""Reads: the unread counts of one user or many (or of one membership), and the readiness ping."""

import logging
from collections.abc import Iterable
from typing import Any
from uuid import UUID

from counts.observability import metrics
from counts.representation import LEVELS, totals

log = logging.getLogger(__name__)

# One membership's entry, costing O(1) probes: the conversation by primary key, the (small)
# deleted-messages index only where the conversation has a deleted message after the member's
# read position (last_deleted_seq, kept by DELETE_MESSAGE), and mentions of everyone only where
# the conversation's last_mention_all_seq is after it. Personal mentions are the member's
# unread_mentions, kept by the writes (migrations/own/0006): no probe at all.
ENTRY = """
    SELECT m.user_id::text, m.conversation_id::text,
           c.last_seq - m.last_read_seq - CASE WHEN c.last_deleted_seq > m.last_read_seq THEN (
               SELECT count(*) FROM messages d
               WHERE d.conversation_id = m.conversation_id
                 AND d.deleted_at IS NOT NULL AND d.seq > m.last_read_seq
           ) ELSE 0 END AS unread,
           m.unread_mentions + CASE WHEN c.last_mention_all_seq > m.last_read_seq THEN (
               SELECT count(*) FROM messages a
               WHERE a.conversation_id = m.conversation_id AND a.mentions_all
                 AND a.deleted_at IS NULL AND a.seq > m.last_read_seq AND a.sender_id <> m.user_id
           ) ELSE 0 END AS mentions,
           m.notify, m.marked_unread, c.parent_id::text AS parent_id
    FROM conversation_members m
    CROSS JOIN LATERAL (SELECT last_seq, last_deleted_seq, last_mention_all_seq, parent_id
                        FROM conversations WHERE id = m.conversation_id OFFSET 0) c
"""

# One statement for one user or many, costing O(the users' conversations that may count), not
# O(memberships): only rows with may_have_unread or marked_unread, read from the partial index
# conversation_members_unread_by_user (migrations/own/0009; the predicate here must imply the
# index's), and one ENTRY each. The flag is never false while a member has unread (invariant 17),
# so the rows it leaves out would have been filtered out anyway. The OFFSET 0 fences keep the
# plan a nested loop: without them the planner hash-joins a full scan of conversations once a
# user has ~1,000 rows (O(all conversations): 10-16 ms at 50,000), and evaluates the deleted
# count twice.
# A conversation is listed when it has unread messages or is marked unread, whatever its level
# (mentions are unread messages: none without unread). The users' own badge policies ride in the
# same statement (a row without a conversation), one primary-key probe per user.
# Ids come back as text: they go straight into JSON, and uuid.UUID objects cost more than the
# query on a big user.
UNREAD_COUNTS = f"""
SELECT * FROM (
    SELECT *, NULL::text AS badge_policy FROM ({ENTRY}
        WHERE m.user_id = ANY(%(user_ids)s::uuid[]) AND (m.may_have_unread OR m.marked_unread)
          AND (c.last_seq > m.last_read_seq OR m.marked_unread)
        OFFSET 0
    ) counted
    WHERE unread > 0 OR marked_unread
    UNION ALL
    SELECT user_id::text, NULL, NULL, NULL, NULL, NULL, NULL, badge_policy FROM user_settings
    WHERE user_id = ANY(%(user_ids)s::uuid[]) AND badge_policy IS NOT NULL
) rows
ORDER BY 1, 2
"""  # noqa: S608 - ENTRY is this module's constant

# One member's entry in one conversation, listed or not (the writes compare it before and after).
MEMBER_ENTRY = f"""{ENTRY}
WHERE m.conversation_id = %(conversation_id)s AND m.user_id = %(user_id)s
"""

PING = "SELECT 1"

# Unknown notify values (an attached app's function is free to return any text) are counted
# as `all` and said once per process.
_said_unknown_levels: set[str] = set()


def unread_counts(cur, user_ids: Iterable[UUID], policy: str = "messages") -> dict[UUID, dict]:
    """Each user's counts in the body's shape (representation.totals), with `policy` as the
    badge policy of users who chose none."""
    return counts_by_user(cur, UNREAD_COUNTS, user_ids, policy)


def counts_by_user(cur, statement, user_ids: Iterable[UUID],
                   policy: str = "messages") -> dict[UUID, dict]:
    """Run a counts statement (rows of user_id text, conversation_id text, unread, mentions,
    notify, marked_unread, parent_id text, badge_policy; parameter user_ids) and fold its rows
    into each user's counts, users without rows included."""
    users = list(user_ids)
    entries: dict[str, list[dict[str, Any]]] = {str(uid): [] for uid in users}
    policies = dict.fromkeys(entries, policy)
    cur.execute(statement, {"user_ids": list(entries)})
    for user_id, conversation_id, unread, mentions, notify, marked, parent_id, chosen in cur:
        if conversation_id is None:
            policies[user_id] = chosen
            continue
        entries[user_id].append({
            "conversation_id": conversation_id, "unread": unread, "mentions": mentions,
            "notify": known_level(notify), "marked_unread": marked, "parent_id": parent_id})
    return {uid: totals(entries[str(uid)], policies[str(uid)]) for uid in users}


def known_level(notify: str) -> str:
    """A notify level, `all` for a value that is none (counted, logged once): a request never
    fails on the app's data."""
    if notify in LEVELS:
        return notify
    metrics.UNKNOWN_NOTIFY_LEVELS.inc()
    if notify not in _said_unknown_levels and len(_said_unknown_levels) < 100:
        _said_unknown_levels.add(notify)
        log.warning("unknown notify level %r counted as 'all' (expected one of %s)",
                    notify, ", ".join(LEVELS))
    return "all"


def member_entry(cur, conversation_id: UUID, user_id: UUID) -> dict | None:
    """One member's entry in a conversation as the body would list it, or None when it would not
    be listed (nothing unread, not marked) or they are not a member."""
    cur.execute(MEMBER_ENTRY, {"conversation_id": str(conversation_id), "user_id": str(user_id)})
    row = cur.fetchone()
    if row is None:
        return None
    _, cid, unread, mentions, notify, marked, parent_id = row
    if unread <= 0 and not marked:
        return None
    return {"conversation_id": cid, "unread": unread, "mentions": mentions, "notify": notify,
            "marked_unread": marked, "parent_id": parent_id}


def ping(cur) -> None:
    """Prove the database answers."""
    cur.execute(PING)

