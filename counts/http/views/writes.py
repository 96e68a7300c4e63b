"""The write paths of our own schema: each commits to Postgres, then bumps the markers of the
users it affected. In attached mode the app owns its writes, and these answer 404."""

from flask import Blueprint, Response

from counts.bumps import outbox
from counts.errors import NotFound
from counts.http import schemas
from counts.http.auth import authorize, parse_path_uuid, requires_caller, requires_service
from counts.http.responses import json_response
from counts.http.views import load_body, resources
from counts.identity import Principal
from counts.sources import own

bp = Blueprint("writes", __name__)


@bp.before_request
def refuse_when_attached() -> None:
    """No writes here when counts is attached to the app's database: the app writes its own
    tables, and its triggers call counts.bump()."""
    if not resources().source.writable:
        raise NotFound("This service is attached to the app's database (COUNTS_SOURCE=attached): "
                       "the app writes its own tables, and its triggers bump the markers.")


def write_then_bump(work, *args):
    """Run a write of counts.sources.own in a transaction, then bump whom it affected."""
    res = resources()
    return outbox.write_then_bump(res.db, res.redis, res.marker_ttl, work, *args,
                                  wal=res.postgres.wal)


@bp.post("/v1/conversations")
@requires_service
def create_conversation() -> Response:
    """Create a conversation with its first members (a thread, with `parent_id`)."""
    body = load_body(schemas.conversation_create)
    conversation_id = write_then_bump(own.create_conversation, body["member_ids"],
                                      body["parent_id"], body["root_seq"])
    return json_response({"conversation_id": str(conversation_id)}, 201)


@bp.delete("/v1/conversations/<conversation_id>")
@requires_service
def delete_conversation(conversation_id: str) -> Response:
    """Delete a conversation and its messages."""
    write_then_bump(own.delete_conversation, parse_path_uuid(conversation_id, "conversation_id"))
    return Response(status=204)


@bp.post("/v1/conversations/<conversation_id>/members")
@requires_service
def add_member(conversation_id: str) -> Response:
    """Add a member (201), or confirm one (200)."""
    cid = parse_path_uuid(conversation_id, "conversation_id")
    user_id = load_body(schemas.member_add)["user_id"]
    added = write_then_bump(own.join, cid, user_id)
    return json_response({"conversation_id": str(cid), "user_id": str(user_id)},
                         201 if added else 200)


@bp.delete("/v1/conversations/<conversation_id>/members/<user_id>")
@requires_service
def remove_member(conversation_id: str, user_id: str) -> Response:
    """Remove a member."""
    cid = parse_path_uuid(conversation_id, "conversation_id")
    write_then_bump(own.leave, cid, parse_path_uuid(user_id, "user_id"))
    return Response(status=204)


@bp.post("/v1/conversations/<conversation_id>/messages")
@requires_caller
def send_message(conversation_id: str, principal: Principal) -> Response:
    """Send a message as `sender_id` (the sender themselves, or a service on their behalf)."""
    cid = parse_path_uuid(conversation_id, "conversation_id")
    body = load_body(schemas.message_create)
    authorize(principal, body["sender_id"])
    mentions = None
    if body["mentions"] is not None:
        mentions = own.Mentions(body["mentions"]["user_ids"], body["mentions"]["all"],
                                may_mention_everyone=principal.is_service,
                                everyone_max_members=resources().source.mention_all_max_members)
    message = write_then_bump(own.send_message, cid, body["sender_id"], body["body"], mentions)
    return json_response(message, 201)


@bp.delete("/v1/conversations/<conversation_id>/messages/<message_id>")
@requires_service
def delete_message(conversation_id: str, message_id: str) -> Response:
    """Delete a message."""
    cid = parse_path_uuid(conversation_id, "conversation_id")
    write_then_bump(own.delete_message, cid, parse_path_uuid(message_id, "message_id"))
    return Response(status=204)


@bp.post("/v1/conversations/<conversation_id>/read")
@requires_caller
def mark_read(conversation_id: str, principal: Principal) -> Response:
    """Mark a conversation read up to `up_to_seq` (default: everything) for `user_id`."""
    cid = parse_path_uuid(conversation_id, "conversation_id")
    body = load_body(schemas.mark_read)
    authorize(principal, body["user_id"])
    state = write_then_bump(own.mark_read, cid, body["user_id"], body["up_to_seq"])
    return json_response({"conversation_id": str(cid), "user_id": str(body["user_id"]), **state})


@bp.patch("/v1/conversations/<conversation_id>/members/<user_id>")
@requires_caller
def update_member(conversation_id: str, user_id: str, principal: Principal) -> Response:
    """Set a member's notify level (that member, or a service)."""
    cid = parse_path_uuid(conversation_id, "conversation_id")
    uid = parse_path_uuid(user_id, "user_id")
    authorize(principal, uid)
    body = load_body(schemas.member_update)
    state = write_then_bump(own.set_notify, cid, uid, body["notify"])
    return json_response({"conversation_id": str(cid), "user_id": str(uid), **state})


@bp.post("/v1/conversations/<conversation_id>/unread")
@requires_caller
def mark_unread(conversation_id: str, principal: Principal) -> Response:
    """Mark a conversation unread for `user_id`: a flag, or from message `from_seq` on."""
    cid = parse_path_uuid(conversation_id, "conversation_id")
    body = load_body(schemas.mark_unread)
    authorize(principal, body["user_id"])
    state = write_then_bump(own.mark_unread, cid, body["user_id"], body["from_seq"])
    return json_response({"conversation_id": str(cid), "user_id": str(body["user_id"]), **state})
