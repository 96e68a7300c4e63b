"""Liveness and readiness for load balancers, on the API's address: nothing more (the metrics and
the detailed readiness are on the operators' address, counts.admin)."""

from flask import Blueprint, Response

from counts.http.views import resources

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process answers HTTP."""
    return Response('{"status": "ok"}', mimetype="application/json")


@bp.get("/readyz")
def readyz() -> Response:
    """Ready when the Postgres primary answers; no query when a request just proved it does."""
    res = resources()
    if res.db.answers():
        return Response('{"status": "ok"}', mimetype="application/json")
    return Response('{"status": "unavailable"}', status=503, mimetype="application/json",
                    headers={"Retry-After": str(res.settings.http.retry_after)})
