"""For operators: liveness and readiness for load balancers, metrics for Prometheus."""

import json

import redis
from flask import Blueprint, Response

from counts import metrics
from counts.errors import DependencyUnavailable
from counts.queries import push as push_sql
from counts.queries import reads
from counts.views import resources

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process answers HTTP."""
    return Response('{"status": "ok"}', mimetype="application/json")


@bp.get("/readyz")
def readyz() -> Response:
    """Ready when the Postgres primary answers. A Redis outage only degrades (reads fall back to
    Postgres), and so do replicas down (replica reads go to the primary) and a JWKS endpoint that
    fails (the keys fetched before keep working)."""
    res = resources()
    try:
        res.db.read(reads.ping)
        postgres = "ok"
    except DependencyUnavailable:
        postgres = "unavailable"
    try:
        res.redis.ping()
        redis_state = "ok"
    except redis.RedisError:
        metrics.redis_failed("ping")
        redis_state = "unavailable"
    # ok, stale (the endpoint fails; the keys fetched before are used) or unavailable (no keys)
    jwks = res.tokens.keys.status() if res.tokens.keys is not None else None
    ready = postgres == "ok"
    replicas = res.postgres.replica_states()
    degraded = (redis_state != "ok" or jwks not in (None, "ok")
                or any(r["state"] != "ok" for r in replicas))
    body = {"status": ("degraded" if degraded else "ok") if ready else "unavailable",
            "postgres": postgres, "redis": redis_state}
    if jwks is not None:
        body["jwks"] = jwks
    if replicas:
        body["postgres_replicas"] = replicas
    if ready:
        # Push is its own process: a stuck dispatcher shows here, without making the API unready.
        try:
            depth, oldest = res.db.read(push_sql.queue_stats)
            body["push"] = {"queued": depth, "oldest_seconds": round(oldest, 3)}
        except DependencyUnavailable:
            pass
    headers = {} if ready else {"Retry-After": str(res.retry_after)}
    return Response(json.dumps(body), status=200 if ready else 503,
                    mimetype="application/json", headers=headers)


@bp.get("/metrics")
def prometheus_metrics() -> Response:
    """Prometheus text exposition, summed over every gunicorn worker, with the push queue's state."""
    try:
        queue = metrics.push_queue(*resources().db.read(push_sql.queue_stats))
    except DependencyUnavailable:
        queue = []
    body, content_type = metrics.exposition(queue)
    return Response(body, content_type=content_type)
