"""The write paths: each commits to Postgres, then bumps the markers of the users it affected."""

import json

import redis
from flask import Blueprint, Response

from counts import markers, metrics, outbox, schemas, writes
from counts.auth import require_service, require_user_or_service
from counts.errors import DependencyUnavailable
from counts.views import authenticate, load_body, parse_uuid, resources

bp = Blueprint("writes", __name__)


def json_response(body: dict, status: int = 200) -> Response:
    """A JSON response."""
    return Response(json.dumps(body), status=status, mimetype="application/json")


def write_then_bump(work, *args):
    """Run a write from counts.writes in a transaction, then bump whom it affected."""
    res = resources()
    return outbox.write_then_bump(res.db, res.redis, res.marker_ttl, work, *args,
                                  wal=res.postgres.wal)


@bp.post("/v1/conversations")
def create_conversation() -> Response:
    """Create a conversation with its first members."""
    require_service(authenticate())
    body = load_body(schemas.conversation_create)
    conversation_id = write_then_bump(writes.create_conversation, body["member_ids"])
    return json_response({"conversation_id": str(conversation_id)}, 201)


@bp.delete("/v1/conversations/<conversation_id>")
def delete_conversation(conversation_id: str) -> Response:
    """Delete a conversation and its messages."""
    require_service(authenticate())
    write_then_bump(writes.delete_conversation, parse_uuid(conversation_id, "conversation_id"))
    return Response(status=204)


@bp.post("/v1/conversations/<conversation_id>/members")
def add_member(conversation_id: str) -> Response:
    """Add a member (201), or confirm one (200)."""
    require_service(authenticate())
    cid = parse_uuid(conversation_id, "conversation_id")
    user_id = load_body(schemas.member_add)["user_id"]
    added = write_then_bump(writes.join, cid, user_id)
    return json_response({"conversation_id": str(cid), "user_id": str(user_id)},
                         201 if added else 200)


@bp.delete("/v1/conversations/<conversation_id>/members/<user_id>")
def remove_member(conversation_id: str, user_id: str) -> Response:
    """Remove a member."""
    require_service(authenticate())
    cid = parse_uuid(conversation_id, "conversation_id")
    write_then_bump(writes.leave, cid, parse_uuid(user_id, "user_id"))
    return Response(status=204)


@bp.post("/v1/conversations/<conversation_id>/messages")
def send_message(conversation_id: str) -> Response:
    """Send a message as `sender_id` (the sender themselves, or a service on their behalf)."""
    principal = authenticate()
    cid = parse_uuid(conversation_id, "conversation_id")
    body = load_body(schemas.message_create)
    require_user_or_service(principal, body["sender_id"])
    message = write_then_bump(writes.send_message, cid, body["sender_id"], body["body"])
    return json_response(message, 201)


@bp.delete("/v1/conversations/<conversation_id>/messages/<message_id>")
def delete_message(conversation_id: str, message_id: str) -> Response:
    """Delete a message."""
    require_service(authenticate())
    cid = parse_uuid(conversation_id, "conversation_id")
    write_then_bump(writes.delete_message, cid, parse_uuid(message_id, "message_id"))
    return Response(status=204)


@bp.post("/v1/conversations/<conversation_id>/read")
def mark_read(conversation_id: str) -> Response:
    """Mark a conversation read up to `up_to_seq` (default: everything) for `user_id`."""
    principal = authenticate()
    cid = parse_uuid(conversation_id, "conversation_id")
    body = load_body(schemas.mark_read)
    require_user_or_service(principal, body["user_id"])
    state = write_then_bump(writes.mark_read, cid, body["user_id"], body["up_to_seq"])
    return json_response({"conversation_id": str(cid), "user_id": str(body["user_id"]), **state})


@bp.post("/v1/markers/bump")
def bump_markers() -> Response:
    """Bump markers for services that write Postgres themselves; queued durably if Redis is down."""
    require_service(authenticate())
    user_ids = load_body(schemas.bump)["user_ids"]
    res = resources()
    try:
        return json_response({"bumped": markers.bump(res.redis, user_ids, res.marker_ttl,
                                                     res.postgres.wal)})
    except markers.PartialBump as partial:  # some Redis Cluster nodes took it, others did not
        metrics.redis_failed("bump")
        bumped, queue = {"bumped": partial.bumped}, partial.failed
    except redis.RedisError:
        metrics.redis_failed("bump")
        bumped, queue = {}, user_ids
    try:
        outbox.enqueue(res.db, queue)
    except DependencyUnavailable:
        raise DependencyUnavailable("Neither Redis nor Postgres can take the bump; retry it.") from None
    return json_response({"queued": len(set(map(str, queue))), **bumped}, 202)
