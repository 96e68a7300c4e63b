"""A user's unread counts: the 200 from Postgres (the 304s and long-polls were answered before
Flask, by counts.http.middleware.fastpath)."""

import logging
from uuid import UUID

import redis
from flask import Blueprint, Response, request

from counts import markers
from counts.http.auth import POLL_KEY, PollState, requires_user
from counts.http.middleware.fastpath import counts_headers
from counts.http.responses import json_response
from counts.http.views import resources
from counts.observability import metrics
from counts.representation import counts_body, degraded_etag

log = logging.getLogger(__name__)

bp = Blueprint("counts", __name__)


@bp.get("/v1/users/<user_id>/unread-counts")
@requires_user  # auth before conditionals (invariant 8)
def get_unread_counts(user_id: UUID) -> Response:
    """A user's unread counts, from Postgres (our tables or the app's function: the source's
    business): the 304s were answered by the fast path."""
    res = resources()
    # The marker is read before this query (invariant 2): the ETag may be older than the data,
    # never newer. A replica answers only if it has replayed the user's last bumped write
    # (invariant 11). The fast path read it; without it (a server that skips the middleware),
    # it is read here.
    poll = request.environ.get(POLL_KEY) or read_poll_state(res, user_id)
    counts = res.postgres.read_seen(poll.lsn, res.source.unread_counts, [user_id])[user_id]
    headers = counts_headers(poll.marker or degraded_etag(), res.load.poll_interval())
    if poll.applied is not None:  # a long-poll (the fast path held it)
        headers.append(("Preference-Applied", poll.applied))
    return json_response(counts_body(user_id, counts), headers=headers)


def read_poll_state(res, user_id: UUID) -> PollState:
    """The marker (None if Redis fails) and WAL position, read now."""
    try:
        found = markers.read(res.redis, user_id, res.marker_ttl)
    except redis.RedisError as error:
        log.warning("redis failed, answering from Postgres: %r", error)
        metrics.redis_failed("read_marker")
        return PollState(None, None, 0)
    return PollState(found.token, found.lsn, 0)
