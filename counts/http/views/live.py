"""Live counts: stream tickets and Server-Sent Events (the long-poll is in the fast path,
beside the 304 it extends; WebSockets are served by counts.http.middleware.websocket, outside Flask)."""

import functools
from uuid import UUID

import redis
from flask import Blueprint, Response, request

from counts.errors import DependencyUnavailable, NotImplementedHere, UpgradeRequired
from counts.http.auth import identify, requires_user
from counts.http.middleware.websocket import PROBLEM_KEY
from counts.http.responses import json_response
from counts.http.streams import open_stream, release_request
from counts.http.views import resources
from counts.live import sse, tickets
from counts.observability import metrics

bp = Blueprint("live", __name__)


@bp.post("/v1/users/<user_id>/stream-tickets")
@requires_user
def create_stream_ticket(user_id: UUID) -> Response:
    """A single-use ticket that opens this user's stream or WebSocket from a browser."""
    res = resources()
    principal = identify(request.environ, res)  # the one the decorator checked
    ttl = res.settings.live.ticket_ttl
    try:
        ticket = tickets.issue(res.redis, str(user_id), principal, ttl)
    except redis.RedisError:
        metrics.redis_failed("ticket")
        raise DependencyUnavailable("Tickets cannot be issued right now; retry.") from None
    return json_response({"ticket": ticket, "expires_in": ttl}, 201, {"Cache-Control": "no-store"})


@bp.get("/v1/users/<user_id>/unread-counts/stream")
def stream_counts(user_id: str) -> Response:
    """The user's counts as Server-Sent Events, at once and on every change."""
    res = resources()
    # Last-Event-ID from EventSource's own reconnects; ?etag= from a new EventSource (a browser
    # reconnecting with a new ticket cannot set the header).
    since = request.headers.get("Last-Event-ID") or request.args.get("etag")
    sub, first = open_stream(request.environ, res, user_id, since)
    retry_ms = int(res.load.poll_interval()) * 1000
    body = sse.events(sub, first, retry_ms, res.settings.live.heartbeat,
                      functools.partial(release_request, request.environ))
    return Response(body, mimetype="text/event-stream", headers=sse.HEADERS)


@bp.get("/v1/users/<user_id>/unread-counts/ws")
def websocket_required(user_id: str) -> Response:
    """The WebSocket URL asked for without an upgrade."""
    raise UpgradeRequired("Open this URL as a WebSocket.", headers={"Upgrade": "websocket"})


# Werkzeug routes a request with `Upgrade: websocket` only to rules marked so. WebSockets are
# served before Flask (counts.http.middleware.websocket); those that reach this view were refused
# there (the problem is rendered here, as every error is), or need a server that can hand over
# its socket.
@bp.route("/v1/users/<user_id>/unread-counts/ws", websocket=True)
def websocket_refused(user_id: str) -> Response:
    """The problem that refused a WebSocket before it started."""
    raise request.environ.get(PROBLEM_KEY) or NotImplementedHere(
        "WebSockets need gunicorn's gevent worker.")
