"""The read path: unread counts answered by a 304 from Redis alone, or a 200 from Postgres."""

import json
import logging
import re
import secrets
from uuid import UUID

import redis
from flask import Blueprint, Response, request
from werkzeug.http import unquote_etag

from counts import markers, queries, schemas
from counts.auth import require_service, require_user_or_service
from counts.errors import DependencyUnavailable
from counts.views import authenticate, load_body, parse_uuid, resources

log = logging.getLogger(__name__)

bp = Blueprint("reads", __name__)

# RFC 9110 If-None-Match: "*" or a list of (possibly weak) quoted entity-tags. Werkzeug parses
# leniently (it takes unquoted tokens as tags); a malformed header must simply not match.
_ENTITY_TAG = r'(?:W/)?"[\x21\x23-\x7e\x80-\xff]*"'
_IF_NONE_MATCH = re.compile(rf"\s*(?:\*|(?:{_ENTITY_TAG})?(?:\s*,\s*(?:{_ENTITY_TAG})?)*)\s*")


def if_none_match_matches(marker: str) -> bool:
    """Whether the request's If-None-Match matches `marker` by weak comparison."""
    raw = request.headers.get("If-None-Match")
    if not raw or not _IF_NONE_MATCH.fullmatch(raw):
        return False
    return request.if_none_match.contains_weak(marker)


def counts_headers(etag: str) -> dict[str, str]:
    """Headers every counts answer carries, 200 and 304 alike."""
    return {
        "ETag": f'"{etag}"',
        "Cache-Control": "private, no-cache",
        "Vary": "Authorization",
        "X-Poll-Interval": resources().poll_interval,
    }


def degraded_etag() -> str:
    """An ETag for a 200 served without Redis: it names no marker, so it can never match one."""
    return "nomarker-" + secrets.token_urlsafe(12)


def counts_body(user_id: UUID, counts: dict) -> dict:
    """The JSON shape of one user's counts."""
    return {"user_id": str(user_id), **counts}


@bp.get("/v1/users/<user_id>/unread-counts")
def get_unread_counts(user_id: str) -> Response:
    """A user's unread counts; 304 without touching Postgres when the client's ETag is current."""
    principal = authenticate()  # auth before conditionals (invariant 8)
    uid = parse_uuid(user_id, "user_id")
    require_user_or_service(principal, uid)
    res = resources()
    try:
        # Read before the query (invariant 2): the ETag may be older than the data, never newer.
        marker = markers.read_marker(res.redis, uid, res.marker_ttl)
    except redis.RedisError as error:
        log.warning("redis failed, answering from Postgres: %r", error)
        marker = None
    if marker is not None and if_none_match_matches(marker):
        return Response(status=304, headers=counts_headers(marker))
    counts = res.db.read(queries.unread_counts, [uid])[uid]
    return Response(json.dumps(counts_body(uid, counts)), mimetype="application/json",
                    headers=counts_headers(marker or degraded_etag()))


@bp.post("/v1/unread-counts/batch")
def post_batch() -> Response:
    """Counts for up to 1,000 users at once; one Postgres query, for the changed users only."""
    require_service(authenticate())
    entries = load_body(schemas.batch)["users"]
    res = resources()
    user_ids = [entry["user_id"] for entry in entries]
    try:
        current = markers.read_markers(res.redis, user_ids, res.marker_ttl)
    except redis.RedisError as error:
        log.warning("redis failed, answering the batch from Postgres: %r", error)
        current = {}
    changed = [uid for uid, entry in zip(user_ids, entries, strict=False)
               if current.get(str(uid)) is None
               or current[str(uid)] != unquote_etag(entry["etag"] or "")[0]]
    changed_set = set(changed)
    fresh, unavailable = {}, False
    if changed:
        try:
            fresh = res.db.read(queries.unread_counts, changed)
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
    headers = {"Retry-After": str(res.retry_after)} if unavailable else {}
    return Response(json.dumps({"users": results}), mimetype="application/json", headers=headers)
