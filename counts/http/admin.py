"""The operators' address, COUNTS_ADMIN_BIND: Prometheus metrics and the detailed readiness.

gunicorn listens there beside the API (loopback by default, as Sygnal and Centrifugo keep theirs).
A request for /metrics or /readyz that arrived on that listener is answered here; anything else
goes to the API. On the API's address /metrics does not exist and /readyz says only whether this
instance can serve (counts.http.views.health): a probe anyone can call must not cost a query per
call, nor show the push backlog and the replicas' addresses.
"""

from collections.abc import Callable, Iterable

import redis
from flask import Blueprint, Flask, Response, current_app

from counts.errors import DependencyUnavailable
from counts.http import responses
from counts.observability import metrics

ADMIN_PATHS = frozenset({"/metrics", "/readyz"})

bp = Blueprint("admin", __name__)


class AdminListener:
    """WSGI layer: ADMIN_PATHS on the admin listener go to the admin app, all else to the API.

    The listener is known by the local port (or unix path) a connection arrived on, which the
    client cannot choose, never by a header; `listener` is set by the worker once it knows its
    sockets (gunicorn.conf.py). Only the admin paths look at it: no syscall on the 304 path.
    """

    def __init__(self, app: Callable, admin: Flask, resources):
        self.app, self.admin, self.resources = app, admin, resources

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") in ADMIN_PATHS and self.on_admin_listener(environ):
            return self.admin(environ, start_response)
        return self.app(environ, start_response)

    def on_admin_listener(self, environ: dict) -> bool:
        """Whether the request's connection came in on the admin listener."""
        listener = self.resources.admin_listener
        sock = environ.get("gunicorn.socket")
        return listener is not None and sock is not None and listener_key(sock.getsockname()) == listener


def listener_key(sockname: tuple | str) -> int | str:
    """What tells a listener's connections apart: its port (inet), or its path (unix)."""
    return sockname[1] if isinstance(sockname, tuple) else sockname


def create_admin_app(resources) -> Flask:
    """The admin app: /metrics, /readyz in full, /healthz."""
    admin = Flask("counts.admin", static_folder=None)
    admin.extensions["counts"] = resources
    responses.register_error_handlers(admin, resources.settings.http.retry_after)
    admin.register_blueprint(bp)
    return admin


@bp.get("/healthz")
def healthz() -> Response:
    """The process answers HTTP."""
    return Response('{"status": "ok"}', mimetype="application/json")


@bp.get("/readyz")
def readyz() -> Response:
    """Ready when the Postgres primary answers. A Redis outage only degrades (reads fall back to
    Postgres), and so do replicas down (replica reads go to the primary) and a JWKS endpoint that
    fails (the keys fetched before keep working)."""
    res = current_app.extensions["counts"]
    postgres = "ok" if res.db.answers(fresh_for=0) else "unavailable"  # asked now: the detail
    try:
        res.redis.ping()
        redis_state = "ok"
    except redis.RedisError:
        metrics.redis_failed("ping")
        redis_state = "unavailable"
    keys = res.tokens.keys
    jwks = jwks_state(keys, res.settings.server.metrics_dir) if keys is not None else None
    ready = postgres == "ok"
    replicas = res.postgres.replica_states()
    degraded = (redis_state != "ok" or jwks not in (None, "ok")
                or any(r["state"] != "ok" for r in replicas))
    body: dict = {"status": ("degraded" if degraded else "ok") if ready else "unavailable",
                  "postgres": postgres, "redis": redis_state}
    if jwks is not None:
        body["jwks"] = jwks
    if replicas:
        body["postgres_replicas"] = replicas
    if ready:
        # Push is its own process: a stuck dispatcher shows here, without making the API unready.
        try:
            depth, oldest = res.push_queue.get()
            body["push"] = {"queued": depth, "oldest_seconds": round(oldest, 3)}
        except DependencyUnavailable:
            pass
    headers = {} if ready else {"Retry-After": str(res.settings.http.retry_after)}
    return responses.json_response(body, 200 if ready else 503, headers)


def jwks_state(keys, metrics_dir: str | None) -> str:
    """ok, stale (a fetch failed: known keys in use) or unavailable (no keys), for the whole
    instance: the worst any live worker reports, so the answer does not depend on which worker
    took the probe."""
    state = keys.status()  # this worker's, after its first fetch
    keyless = metrics.across_workers(metrics_dir, "counts_jwks_keyless")
    failing = metrics.across_workers(metrics_dir, "counts_dependency_unavailable",
                                     {"dependency": "jwks"})
    if state == "unavailable" or keyless == 1:
        return "unavailable"
    return "stale" if state == "stale" or failing == 1 else "ok"


@bp.get("/metrics")
def prometheus_metrics() -> Response:
    """Prometheus text exposition, summed over every gunicorn worker, with the push queue, the
    devices and the poll interval."""
    res = current_app.extensions["counts"]
    body, content_type = metrics.exposition(
        res.settings.server.metrics_dir,
        [*res.push_queue.families(), metrics.poll_interval(res.settings.http.poll_interval)])
    return Response(body, content_type=content_type)
