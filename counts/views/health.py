"""For operators: liveness and readiness for load balancers, metrics for Prometheus."""

import json

import redis
from flask import Blueprint, Response

from counts import metrics
from counts.errors import DependencyUnavailable
from counts.queries import reads
from counts.views import resources

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process answers HTTP."""
    return Response('{"status": "ok"}', mimetype="application/json")


@bp.get("/readyz")
def readyz() -> Response:
    """Ready when the Postgres primary answers; Redis or replicas down only degrade (reads fall
    back to Postgres, replica reads to the primary)."""
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
    ready = postgres == "ok"
    replicas = res.postgres.replica_states()
    healthy = redis_state == "ok" and all(r["state"] == "ok" for r in replicas)
    body = {"status": ("ok" if healthy else "degraded") if ready else "unavailable",
            "postgres": postgres, "redis": redis_state}
    if replicas:
        body["postgres_replicas"] = replicas
    headers = {} if ready else {"Retry-After": str(res.retry_after)}
    return Response(json.dumps(body), status=200 if ready else 503,
                    mimetype="application/json", headers=headers)


@bp.get("/metrics")
def prometheus_metrics() -> Response:
    """Prometheus text exposition, summed over every gunicorn worker."""
    body, content_type = metrics.exposition()
    return Response(body, content_type=content_type)
