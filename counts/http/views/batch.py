"""Counts for many users at once, for services: one Postgres query, for the changed users only."""

import logging

import redis
from flask import Blueprint, Response
from werkzeug.http import unquote_etag

from counts import markers
from counts.errors import DependencyUnavailable
from counts.http import schemas
from counts.http.auth import requires_service
from counts.http.responses import json_response
from counts.http.views import load_body, resources
from counts.observability import metrics
from counts.representation import counts_body, degraded_etag

log = logging.getLogger(__name__)

bp = Blueprint("batch", __name__)


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
        known = [lsn for lsn in needed if lsn is not None]
        position = max(known) if len(known) == len(needed) else None
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
    return json_response({"users": results}, headers=headers)
