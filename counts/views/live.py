"""Live counts: stream tickets, Server-Sent Events and WebSocket (the long-poll is in
counts.conditional, beside the 304 it extends)."""

import json
import random

import redis
from flask import Blueprint, Response, request
from wsproto.utilities import ProtocolError

from counts import markers, metrics
from counts.auth import Principal, require_user_or_service
from counts.errors import (
    AtCapacity,
    DependencyUnavailable,
    NotImplementedHere,
    Problem,
    Unauthorized,
    UpgradeRequired,
)
from counts.live import sse, tickets, ws
from counts.live.stream import Subscription
from counts.views import authenticate, parse_uuid, resources

bp = Blueprint("live", __name__)


@bp.post("/v1/users/<user_id>/stream-tickets")
def create_stream_ticket(user_id: str) -> Response:
    """A single-use ticket that opens this user's stream or WebSocket from a browser."""
    principal = authenticate()
    uid = parse_uuid(user_id, "user_id")
    require_user_or_service(principal, uid)
    res = resources()
    ttl = res.stream_ticket_ttl
    try:
        ticket = tickets.issue(res.redis, str(uid), principal, ttl)
    except redis.RedisError:
        metrics.redis_failed("ticket")
        raise DependencyUnavailable("Tickets cannot be issued right now; retry.") from None
    return Response(json.dumps({"ticket": ticket, "expires_in": ttl}), status=201,
                    mimetype="application/json", headers={"Cache-Control": "no-store"})


@bp.get("/v1/users/<user_id>/unread-counts/stream")
def stream_counts(user_id: str) -> Response:
    """The user's counts as Server-Sent Events, at once and on every change."""
    # Last-Event-ID from EventSource's own reconnects; ?etag= from a new EventSource (a browser
    # reconnecting with a new ticket cannot set the header).
    since = request.headers.get("Last-Event-ID") or request.args.get("etag")
    sub, first = open_subscription(user_id, since)
    res = resources()
    retry_ms = int(res.load.poll_interval()) * 1000
    body = sse.events(sub, first, retry_ms, res.stream_heartbeat)
    return Response(body, mimetype="text/event-stream", headers=sse.HEADERS)


@bp.get("/v1/users/<user_id>/unread-counts/ws")
def websocket_required(user_id: str) -> Response:
    """The WebSocket URL asked for without an upgrade."""
    raise UpgradeRequired("Open this URL as a WebSocket.", headers={"Upgrade": "websocket"})


# Werkzeug routes a request with `Upgrade: websocket` only to rules marked so.
@bp.route("/v1/users/<user_id>/unread-counts/ws", websocket=True)
def websocket_counts(user_id: str) -> Response:
    """The user's counts over a WebSocket, at once and on every change."""
    if not ws.supported(request.environ):
        raise NotImplementedHere("WebSockets need gunicorn's gevent worker.")
    try:
        connection = ws.handshake(request.environ)
    except ProtocolError as error:
        raise Problem(f"Not a valid WebSocket upgrade: {error}.") from None
    sub, first = open_subscription(user_id, request.args.get("etag"))
    res = resources()
    session = ws.Session(connection, request.environ["gunicorn.socket"], sub,
                         res.ws_ping_interval, res.stream_heartbeat)
    return TakenOver(session, first)


class TakenOver(Response):
    """The response of a WebSocket: its session runs on the socket, then gunicorn closes it."""

    def __init__(self, session: ws.Session, first):
        super().__init__()
        self.session, self.first = session, first

    def __call__(self, environ, start_response):
        """Serve the session; gunicorn ends the connection on StopIteration (nothing to write)."""
        start_response("101 Switching Protocols", [])  # for the access log; never written
        with resources().load.waiting():
            self.session.run(self.first)
        raise StopIteration


def open_subscription(user_id: str, since: str | None) -> tuple[Subscription, object]:
    """Auth, limits and capacity, then the stream's place on the feed and its first counts.

    Every refusal (401, 403, 429, 503) is a problem+json answer before the stream starts.
    """
    principal = stream_principal(user_id)
    uid = parse_uuid(user_id, "user_id")
    require_user_or_service(principal, uid)
    res = resources()
    if res.feed.full:
        refuse_at_capacity(res)
    try:
        marker = markers.read_marker(res.redis, uid, res.marker_ttl)
    except redis.RedisError:
        metrics.redis_failed("read_marker")
        marker = None  # degraded: counts labelled with no marker; the feed re-checks later
    sub = Subscription(res, uid, marker, principal.expires_at)
    if not sub.open():
        refuse_at_capacity(res)
    try:
        return sub, sub.first(since)
    except BaseException:
        sub.close()
        raise


def stream_principal(user_id: str) -> Principal:
    """Who opens the stream: a `?ticket=` (browsers), else the Authorization header."""
    ticket = request.args.get("ticket")
    if ticket is None:
        return authenticate()
    res = resources()
    try:
        principal = tickets.redeem(res.redis, ticket, user_id)
    except Unauthorized:
        res.rate_limit.check_anonymous(res.redis, request.remote_addr or "unknown",
                                       res.load.poll_interval())
        raise
    except redis.RedisError:
        metrics.redis_failed("ticket")
        raise DependencyUnavailable("Tickets cannot be checked right now; retry.") from None
    if not principal.is_service:
        res.rate_limit.check_user(res.redis, principal.user_id, res.load.poll_interval())
    return principal


def refuse_at_capacity(res) -> None:
    """503 with a jittered Retry-After: refused clients must not all come back at once."""
    seconds = random.randint(res.retry_after, 3 * res.retry_after)
    raise AtCapacity("This server holds all the live connections it can; retry later or poll.",
                     headers={"Retry-After": str(seconds)})

