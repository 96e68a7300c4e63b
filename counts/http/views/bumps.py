"""The bump API, for writers that change counts where counts does not see them (both modes)."""

import time

import redis
from flask import Blueprint, Response

from counts import markers
from counts.bumps import outbox
from counts.errors import DependencyUnavailable
from counts.http import schemas
from counts.http.auth import requires_service
from counts.http.responses import json_response
from counts.http.views import load_body, resources
from counts.observability import metrics

bp = Blueprint("markers", __name__)


@bp.post("/v1/markers/bump")
@requires_service
def bump_markers() -> Response:
    """Bump markers for services that write Postgres themselves; queued durably if Redis is down."""
    user_ids = load_body(schemas.bump)["user_ids"]
    res = resources()
    try:
        # The writer calls this right after its commit: the commit-to-live-frame clock starts now.
        return json_response({"bumped": markers.bump(res.redis, user_ids, res.marker_ttl,
                                                     res.postgres.wal, time.time())})
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
