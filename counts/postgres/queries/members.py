"""A member's own settings of a conversation (notify level, mark as unread) and a user's badge
policy: writes that change what counts show without a new message."""

from uuid import UUID

from counts.postgres.queries.conversations import RECOUNT_MENTIONS

SET_NOTIFY = """
UPDATE conversation_members SET notify = %(notify)s
WHERE conversation_id = %(conversation_id)s AND user_id = %(user_id)s
"""

MARK_UNREAD = """
UPDATE conversation_members SET marked_unread = true
WHERE conversation_id = %(conversation_id)s AND user_id = %(user_id)s
RETURNING last_read_seq
"""

# The one write that moves a read pointer back, on purpose (Slack's, Mattermost's, Stream's
# "mark unread from here"): `from_seq` becomes unread; already unread, nothing moves.
# A pointer moved back leaves a message after it: a trigger of migrations/own/0009 sets
# may_have_unread (invariant 17).
_UNREAD_POSITION = "LEAST(m.last_read_seq, %(from_seq)s - 1)"
MARK_UNREAD_FROM = f"""
UPDATE conversation_members m
SET last_read_seq = {_UNREAD_POSITION},
    unread_mentions = {RECOUNT_MENTIONS.format(position=_UNREAD_POSITION)}
WHERE m.conversation_id = %(conversation_id)s AND m.user_id = %(user_id)s
RETURNING m.last_read_seq
"""  # noqa: S608 - composed of constants

SET_BADGE_POLICY = """
INSERT INTO user_settings (user_id, badge_policy) VALUES (%(user_id)s, %(badge_policy)s)
ON CONFLICT (user_id) DO UPDATE SET badge_policy = EXCLUDED.badge_policy
"""

BADGE_POLICY = "SELECT badge_policy FROM user_settings WHERE user_id = %s FOR UPDATE"


def _member(conversation_id: UUID, user_id: UUID) -> dict:
    return {"conversation_id": str(conversation_id), "user_id": str(user_id)}


def set_notify(cur, conversation_id: UUID, user_id: UUID, notify: str) -> bool:
    """Set a member's notify level; False if they are not a member."""
    cur.execute(SET_NOTIFY, {**_member(conversation_id, user_id), "notify": notify})
    return cur.rowcount == 1


def mark_unread(cur, conversation_id: UUID, user_id: UUID, from_seq: int | None) -> int | None:
    """Flag a conversation unread for a member, or move their read pointer back to before
    `from_seq`; their last_read_seq, or None if they are not a member."""
    if from_seq is None:
        cur.execute(MARK_UNREAD, _member(conversation_id, user_id))
    else:
        cur.execute(MARK_UNREAD_FROM, {**_member(conversation_id, user_id), "from_seq": from_seq})
    row = cur.fetchone()
    return None if row is None else row[0]


def badge_policy(cur, user_id: UUID) -> str | None:
    """The badge policy a user chose (locked until the transaction ends), or None."""
    cur.execute(BADGE_POLICY, (str(user_id),))
    row = cur.fetchone()
    return None if row is None else row[0]


def set_badge_policy(cur, user_id: UUID, policy: str | None) -> None:
    """A user's own badge policy (None: the server's COUNTS_BADGE_POLICY)."""
    cur.execute(SET_BADGE_POLICY, {"user_id": str(user_id), "badge_policy": policy})
