"""COUNTS_SOURCE=own (the default): our own schema (conversations, members, messages), its
counts, and the writes that change them.

Each write runs in one transaction and names the users whose counts it changed; run it through
`counts.bumps.outbox.write_then_bump`, which records their bumps and push jobs in the same
transaction and bumps those users after commit (invariants 1, 3 and 12). Plain functions of a
cursor, so other services can call them too.
"""

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from uuid import UUID

from counts.errors import Forbidden, InvalidInput, NotFound
from counts.postgres.queries import conversations, members, reads
from counts.representation import badge_measures


class OwnSource:
    """Our tables in the database's default schema, as every deployment before attach had them."""

    name = "own"
    schema: str | None = None
    writable = True
    relays_bumps = False  # our writes bump before they return (bumps.outbox.write_then_bump)

    def __init__(self, badge_policy: str = "messages", mention_all_max_members: int = 1000):
        self.badge_policy = badge_policy
        self.mention_all_max_members = mention_all_max_members

    def unread_counts(self, cur, user_ids: Iterable[UUID]) -> dict[UUID, dict]:
        """Each user's counts from conversation_members and conversations (queries.reads)."""
        return reads.unread_counts(cur, user_ids, self.badge_policy)

    def problem(self, cur) -> str | None:
        """Nothing to check: `db upgrade` made our tables."""
        return None


# --- the writes --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Changes:
    """Whom a write changed: the users to bump, and how push tells them (DESIGN.md invariant 12)."""

    bump: list[UUID] = field(default_factory=list)
    alert: list[UUID] = field(default_factory=list)  # a new message for them: an alert push
    badge: list[UUID] = field(default_factory=list)  # their total changed otherwise: badge only
    conversation_id: UUID | None = None  # the conversation that changed


def _badge(user_ids: list[UUID], conversation_id: UUID) -> Changes:
    """Bump these users and push them a badge-only update."""
    return Changes(user_ids, badge=user_ids, conversation_id=conversation_id)


def create_conversation(cur, member_ids: list[UUID], parent_id: UUID | None = None,
                        root_seq: int | None = None) -> tuple[UUID, Changes]:
    """A new conversation with these members, or a thread of `parent_id` (on its message
    `root_seq`); the members are bumped as if they had joined."""
    if parent_id is not None:
        found = conversations.parent(cur, parent_id)
        if found is None:
            raise NotFound(f"Conversation {parent_id} does not exist.")
        last_seq, grandparent = found
        if grandparent is not None:
            raise InvalidInput(f"Conversation {parent_id} is a thread: threads hang under "
                               "top-level conversations only.")
        if root_seq is not None and root_seq > last_seq:
            raise InvalidInput(f"Conversation {parent_id} has no message {root_seq}.")
    conversation_id = uuid.uuid4()
    new_members = list(dict.fromkeys(member_ids))  # de-duplicated, order kept
    conversations.create_conversation(cur, conversation_id, new_members, parent_id, root_seq)
    return conversation_id, Changes(new_members)  # nothing unread yet: no push


def _locked_last_seq(cur, conversation_id: UUID) -> int:
    """Lock the conversation (see conversations.LOCK_CONVERSATION) or 404."""
    last_seq = conversations.lock_conversation(cur, conversation_id)
    if last_seq is None:
        raise NotFound(f"Conversation {conversation_id} does not exist.")
    return last_seq


def join(cur, conversation_id: UUID, user_id: UUID) -> tuple[bool, Changes]:
    """Add a member (nothing unread for them yet); whether they were new."""
    last_seq = _locked_last_seq(cur, conversation_id)
    added = conversations.join(cur, conversation_id, user_id, last_seq)
    return added, Changes([user_id] if added else [])  # nothing unread for them: no push


def leave(cur, conversation_id: UUID, user_id: UUID) -> tuple[None, Changes]:
    """Remove a member: their unread in this conversation disappears."""
    _locked_last_seq(cur, conversation_id)
    if not conversations.leave(cur, conversation_id, user_id):
        raise NotFound(f"User {user_id} is not a member of conversation {conversation_id}.")
    return None, _badge([user_id], conversation_id)


def delete_conversation(cur, conversation_id: UUID) -> tuple[None, Changes]:
    """Delete a conversation: every member's unread in it disappears."""
    _locked_last_seq(cur, conversation_id)
    return None, _badge(conversations.delete_conversation(cur, conversation_id), conversation_id)


@dataclass(frozen=True)
class Mentions:
    """Whom a message mentions, as its writer says (never parsed from text)."""

    user_ids: list[UUID] = field(default_factory=list)
    everyone: bool = False  # `"all": true`
    may_mention_everyone: bool = True  # a service always; a user in conversations up to a size
    everyone_max_members: int = 1000  # COUNTS_MENTION_ALL_MAX_MEMBERS, for a user


def send_message(cur, conversation_id: UUID, sender_id: UUID, body: str,
                 mentions: Mentions | None = None) -> tuple[dict, Changes]:
    """Append a message; it is unread for every other member and marks the sender's read state.

    Mentioned ids must be members; the sender never mentions themselves. A mention of everyone
    is stored as the message's flag alone (it covers the personal ones). Alerts follow each
    recipient's notify level: `all` every message, `mentions` those that mention them, `none`
    never; every recipient is bumped (their conversation's unread changed, whatever its level),
    and only the alerted ones' badges can have changed (a recipient at `mentions` not mentioned,
    or at `none`, adds the same to every badge policy as before).
    """
    seq = conversations.next_seq(cur, conversation_id)  # also locks the conversation: seqs stay dense
    if seq is None:
        raise NotFound(f"Conversation {conversation_id} does not exist.")
    sender_state = conversations.read_state(cur, conversation_id, sender_id)
    if sender_state is None:
        raise Forbidden(f"User {sender_id} is not a member of conversation {conversation_id}.")
    sender_read, sender_marked = sender_state
    levels = conversations.member_levels(cur, conversation_id)
    everyone, named = _mentioned(mentions or Mentions(), str(sender_id), conversation_id, levels)
    message_id = uuid.uuid4()
    conversations.insert_message(cur, conversation_id, seq, message_id, sender_id, body, everyone)
    if named:
        conversations.insert_mentions(cur, conversation_id, seq, named)
    conversations.mark_read(cur, conversation_id, sender_id, seq, sender_read)
    recipients = [uid for uid in levels if uid != str(sender_id)]
    alerted = [uid for uid in recipients if levels[uid] == "all" or (
        levels[uid] == "mentions" and (everyone or uid in named))]
    # The sender had unread here (or had marked it unread), and sending just read it: their
    # other devices' badges change.
    sender = [sender_id] if sender_read < seq - 1 or sender_marked else []
    return {"message_id": str(message_id), "seq": seq}, Changes(
        [UUID(uid) for uid in recipients] + sender, alert=[UUID(uid) for uid in alerted],
        badge=sender, conversation_id=conversation_id)


def _mentioned(mentions: Mentions, sender: str, conversation_id: UUID,
               levels: dict[str, str]) -> tuple[bool, list[str]]:
    """(whether the message mentions everyone, the members it mentions by name), checked."""
    if mentions.everyone:
        if not mentions.may_mention_everyone and len(levels) > mentions.everyone_max_members:
            raise Forbidden(f"Only a service may mention everyone in a conversation of more than "
                            f"{mentions.everyone_max_members} members.")
        return True, []
    named = [uid for uid in dict.fromkeys(str(u) for u in mentions.user_ids) if uid != sender]
    strangers = [uid for uid in named if uid not in levels]
    if strangers:
        raise InvalidInput(f"Only members can be mentioned; not members of conversation "
                           f"{conversation_id}: {', '.join(strangers)}.")
    return False, named


def mark_read(cur, conversation_id: UUID, user_id: UUID,
              up_to_seq: int | None) -> tuple[dict, Changes]:
    """Move a member's read state forward (never back) and clear their mark-as-unread."""
    _locked_last_seq(cur, conversation_id)
    state = conversations.read_state(cur, conversation_id, user_id)
    if state is None:
        raise NotFound(f"User {user_id} is not a member of conversation {conversation_id}.")
    entry = reads.member_entry(cur, conversation_id, user_id)
    last_read_seq, _ = conversations.mark_read(cur, conversation_id, user_id, up_to_seq, state[0])
    # Read on one device: the others' badges must clear too (invariant 3, for push).
    return {"last_read_seq": last_read_seq}, _member_changes(cur, conversation_id, user_id, entry)


def _member_changes(cur, conversation_id: UUID, user_id: UUID, before: dict | None) -> Changes:
    """Whom a change to one member's state changed: them, if their entry in the body did (bump),
    and if it changed what the conversation adds to their badge (a badge push)."""
    after = reads.member_entry(cur, conversation_id, user_id)
    if after == before:
        return Changes(conversation_id=conversation_id)
    badge = [user_id] if badge_measures(after) != badge_measures(before) else []
    return Changes([user_id], badge=badge, conversation_id=conversation_id)


def set_notify(cur, conversation_id: UUID, user_id: UUID, notify: str) -> tuple[dict, Changes]:
    """Set a member's notify level: what their conversation adds to totals, badge and alerts."""
    _locked_last_seq(cur, conversation_id)
    before = reads.member_entry(cur, conversation_id, user_id)
    if not members.set_notify(cur, conversation_id, user_id, notify):
        raise NotFound(f"User {user_id} is not a member of conversation {conversation_id}.")
    return {"notify": notify}, _member_changes(cur, conversation_id, user_id, before)


def mark_unread(cur, conversation_id: UUID, user_id: UUID,
                from_seq: int | None) -> tuple[dict, Changes]:
    """Mark a conversation unread for a member: a flag without `from_seq`, else their read
    pointer moved back so that `from_seq` is unread (the one write that moves it back)."""
    _locked_last_seq(cur, conversation_id)
    before = reads.member_entry(cur, conversation_id, user_id)
    last_read_seq = members.mark_unread(cur, conversation_id, user_id, from_seq)
    if last_read_seq is None:
        raise NotFound(f"User {user_id} is not a member of conversation {conversation_id}.")
    return ({"last_read_seq": last_read_seq, "marked_unread": from_seq is None},
            _member_changes(cur, conversation_id, user_id, before))


def delete_message(cur, conversation_id: UUID, message_id: UUID) -> tuple[None, Changes]:
    """Soft-delete a message: it stops counting as unread for the members who had not read it."""
    _locked_last_seq(cur, conversation_id)
    outcome, deleted = conversations.delete_message(cur, conversation_id, message_id)
    if outcome == "missing":
        raise NotFound(f"Message {message_id} is not in conversation {conversation_id}.")
    if deleted is None:
        return None, Changes()
    seq, everyone, named = deleted
    # Exactly whom it was unread for (invariant 4); of those, the badge changes where the
    # conversation adds its unread (`all`), or its mentions and this message mentioned them.
    levels = conversations.unread_by(cur, conversation_id, seq)
    badge = [uid for uid, level in levels.items() if level == "all" or (
        level == "mentions" and (everyone or str(uid) in named))]
    return None, Changes(list(levels), badge=badge, conversation_id=conversation_id)

