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

from counts.errors import Forbidden, NotFound
from counts.postgres.queries import conversations, reads


class OwnSource:
    """Our tables in the database's default schema, as every deployment before attach had them."""

    name = "own"
    schema: str | None = None
    writable = True
    relays_bumps = False  # our writes bump before they return (bumps.outbox.write_then_bump)

    def unread_counts(self, cur, user_ids: Iterable[UUID]) -> dict[UUID, dict]:
        """Each user's counts from conversation_members and conversations (queries.reads)."""
        return reads.unread_counts(cur, user_ids)

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


def create_conversation(cur, member_ids: list[UUID]) -> tuple[UUID, Changes]:
    """A new conversation with these members; they are bumped as if they had joined."""
    conversation_id = uuid.uuid4()
    members = list(dict.fromkeys(member_ids))  # de-duplicated, order kept
    conversations.create_conversation(cur, conversation_id, members)
    return conversation_id, Changes(members)  # nothing unread yet: no push


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


def send_message(cur, conversation_id: UUID, sender_id: UUID, body: str) -> tuple[dict, Changes]:
    """Append a message; it is unread for every other member and marks the sender's read state."""
    seq = conversations.next_seq(cur, conversation_id)  # also locks the conversation: seqs stay dense
    if seq is None:
        raise NotFound(f"Conversation {conversation_id} does not exist.")
    sender_read = conversations.read_state(cur, conversation_id, sender_id)
    if sender_read is None:
        raise Forbidden(f"User {sender_id} is not a member of conversation {conversation_id}.")
    message_id = uuid.uuid4()
    conversations.insert_message(cur, conversation_id, seq, message_id, sender_id, body)
    conversations.mark_read(cur, conversation_id, sender_id, seq, sender_read)
    recipients = [uid for uid in conversations.member_ids(cur, conversation_id) if uid != sender_id]
    # The sender had unread here, and sending just read it: their other devices' badges change.
    sender = [sender_id] if sender_read < seq - 1 else []
    return {"message_id": str(message_id), "seq": seq}, Changes(
        recipients + sender, alert=recipients, badge=sender, conversation_id=conversation_id)


def mark_read(cur, conversation_id: UUID, user_id: UUID,
              up_to_seq: int | None) -> tuple[dict, Changes]:
    """Move a member's read state forward (never back); bump them only if it moved."""
    _locked_last_seq(cur, conversation_id)
    before = conversations.read_state(cur, conversation_id, user_id)
    if before is None:
        raise NotFound(f"User {user_id} is not a member of conversation {conversation_id}.")
    last_read_seq, changed = conversations.mark_read(cur, conversation_id, user_id, up_to_seq, before)
    # Read on one device: the others' badges must clear too (invariant 3, for push).
    return {"last_read_seq": last_read_seq}, _badge([user_id] if changed else [], conversation_id)


def delete_message(cur, conversation_id: UUID, message_id: UUID) -> tuple[None, Changes]:
    """Soft-delete a message: it stops counting as unread for the members who had not read it."""
    _locked_last_seq(cur, conversation_id)
    outcome = conversations.delete_message(cur, conversation_id, message_id)
    if outcome == "missing":
        raise NotFound(f"Message {message_id} is not in conversation {conversation_id}.")
    if outcome == "already":
        return None, Changes()
    return None, _badge(conversations.member_ids(cur, conversation_id), conversation_id)

