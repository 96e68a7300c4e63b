"""The read path: unread counts answered by a 304 from Redis alone, or a 200 from Postgres."""

import json
import logging
import secrets
from uuid import UUID

import redis
from flask import Blueprint, Response, request
from werkzeug.http import unquote_etag

from counts import markers, metrics, schemas
from counts.conditional import DEGRADED_ETAG, counts_headers
from counts.errors import DependencyUnavailable
from counts.http.auth import POLL_KEY, PollState, requires_service, requires_user
from counts.views import load_body, resources

log = logging.getLogger(__name__)

bp = Blueprint("reads", __name__)


def degraded_etag() -> str:
    """An ETag for a 200 served without Redis: it names no marker, so it can never match one."""
    return DEGRADED_ETAG.strip('"') + secrets.token_urlsafe(12)


def counts_body(user_id: UUID, counts: dict) -> dict:
    """The JSON shape of one user's counts."""
    return {"user_id": str(user_id), **counts}


@bp.get("/v1/users/<user_id>/unread-counts")
@requires_user  # auth before conditionals (invariant 8)
def get_unread_counts(user_id: UUID) -> Response:
    """A user's unread counts, from Postgres (our tables or the app's function: the source's
    business): the 304s were answered by counts.conditional."""
    res = resources()
    # The marker is read before this query (invariant 2): the ETag may be older than the data,
    # never newer. A replica answers only if it has replayed the user's last bumped write
    # (invariant 11). The fast path read it; without it (a server that skips the middleware),
    # it is read here.
    poll = request.environ.get(POLL_KEY) or read_poll_state(res, user_id)
    counts = res.postgres.read_seen(poll.lsn, res.source.unread_counts, [user_id])[user_id]
    headers = counts_headers(poll.marker or degraded_etag(), res.load.poll_interval())
    if poll.applied is not None:  # a long-poll (counts.conditional)
        headers.append(("Preference-Applied", poll.applied))
    return Response(json.dumps(counts_body(user_id, counts)), mimetype="application/json",
                    headers=headers)


def read_poll_state(res, user_id: UUID) -> PollState:
    """The marker (None if Redis fails) and WAL position, read now."""
    try:
        found = markers.read(res.redis, user_id, res.marker_ttl)
    except redis.RedisError as error:
        log.warning("redis failed, answering from Postgres: %r", error)
        metrics.redis_failed("read_marker")
        return PollState(None, None, 0)
    return PollState(found.token, found.lsn, 0)


@bp.post("/v1/unread-counts/batch")
@requires_service
def post_batch() -> Response:
    """Counts for up to 1,000 users at once; one Postgres query, for the changed users only."""
    entries = load_body(schemas.batch)["users"]
    res = resources()
    user_ids = [entry["user_id"] for entry in entries]
    try:
        current, positions = markers.read_markers_and_lsns(res.redis, user_ids, res.marker_ttl)
    except redis.RedisError as error:
        log.warning("redis failed, answering the batch from Postgres: %r", error)
        metrics.redis_failed("read_markers")
        current, positions = {}, {}
    changed = [uid for uid, entry in zip(user_ids, entries, strict=False)
               if current.get(str(uid)) is None
               or current[str(uid)] != unquote_etag(entry["etag"] or "")[0]]
    changed_set = set(changed)
    fresh, unavailable = {}, False
    if changed:
        # A replica may answer for all of them once it has replayed every one's last write.
        needed = [positions.get(str(uid)) for uid in changed]
        position = None if None in needed else max(needed)
        try:
            fresh = res.postgres.read_seen(position, res.source.unread_counts, changed)
        except DependencyUnavailable:
            unavailable = True
    results = []
    for uid in user_ids:
        etag = f'"{current.get(str(uid)) or degraded_etag()}"'
        if uid not in changed_set:
            results.append({"user_id": str(uid), "status": 304, "etag": etag})
        elif uid in fresh:
            results.append({"user_id": str(uid), "status": 200, "etag": etag,
                            "counts": counts_body(uid, fresh[uid])})
        else:  # changed, and Postgres cannot say how
            results.append({"user_id": str(uid), "status": 503})
    headers = {"Retry-After": str(res.settings.http.retry_after)} if unavailable else {}
    return Response(json.dumps({"users": results}), mimetype="application/json", headers=headers)
