"""Count-changing writes. Each runs in one transaction and names the users whose counts it changed.

Run them through `counts.outbox.write_then_bump`, which bumps those users after commit
(invariants 1 and 3). Plain functions of a cursor, so other services can call them too.
"""

import uuid
from uuid import UUID

from counts.errors import Forbidden, NotFound
from counts.queries import conversations

Bumps = list[UUID]


def create_conversation(cur, member_ids: list[UUID]) -> tuple[UUID, Bumps]:
    """A new conversation with these members; they are bumped as if they had joined."""
    conversation_id = uuid.uuid4()
    members = list(dict.fromkeys(member_ids))  # de-duplicated, order kept
    conversations.create_conversation(cur, conversation_id, members)
    return conversation_id, members


def _locked_last_seq(cur, conversation_id: UUID) -> int:
    """Lock the conversation (see conversations.LOCK_CONVERSATION) or 404."""
    last_seq = conversations.lock_conversation(cur, conversation_id)
    if last_seq is None:
        raise NotFound(f"Conversation {conversation_id} does not exist.")
    return last_seq


def join(cur, conversation_id: UUID, user_id: UUID) -> tuple[bool, Bumps]:
    """Add a member (nothing unread for them yet); whether they were new."""
    last_seq = _locked_last_seq(cur, conversation_id)
    added = conversations.join(cur, conversation_id, user_id, last_seq)
    return added, [user_id] if added else []


def leave(cur, conversation_id: UUID, user_id: UUID) -> tuple[None, Bumps]:
    """Remove a member: their unread in this conversation disappears."""
    _locked_last_seq(cur, conversation_id)
    if not conversations.leave(cur, conversation_id, user_id):
        raise NotFound(f"User {user_id} is not a member of conversation {conversation_id}.")
    return None, [user_id]


def delete_conversation(cur, conversation_id: UUID) -> tuple[None, Bumps]:
    """Delete a conversation: every member's unread in it disappears."""
    _locked_last_seq(cur, conversation_id)
    return None, conversations.delete_conversation(cur, conversation_id)


def send_message(cur, conversation_id: UUID, sender_id: UUID, body: str) -> tuple[dict, Bumps]:
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
    bumps = [uid for uid in conversations.member_ids(cur, conversation_id) if uid != sender_id]
    if sender_read < seq - 1:
        bumps.append(sender_id)  # they had unread here, and sending just read it
    return {"message_id": str(message_id), "seq": seq}, bumps


def mark_read(cur, conversation_id: UUID, user_id: UUID,
              up_to_seq: int | None) -> tuple[dict, Bumps]:
    """Move a member's read state forward (never back); bump them only if it moved."""
    _locked_last_seq(cur, conversation_id)
    before = conversations.read_state(cur, conversation_id, user_id)
    if before is None:
        raise NotFound(f"User {user_id} is not a member of conversation {conversation_id}.")
    last_read_seq, changed = conversations.mark_read(cur, conversation_id, user_id, up_to_seq, before)
    return {"last_read_seq": last_read_seq}, [user_id] if changed else []


def delete_message(cur, conversation_id: UUID, message_id: UUID) -> tuple[None, Bumps]:
    """Soft-delete a message: it stops counting as unread for the members who had not read it."""
    _locked_last_seq(cur, conversation_id)
    outcome = conversations.delete_message(cur, conversation_id, message_id)
    if outcome == "missing":
        raise NotFound(f"Message {message_id} is not in conversation {conversation_id}.")
    if outcome == "already":
        return None, []
    return None, conversations.member_ids(cur, conversation_id)

