"""counts: unread-message counts that answer "nothing changed" from Redis, not Postgres."""

from typing import Any

from flask import Flask, request
from werkzeug.middleware.proxy_fix import ProxyFix

from counts import logs, markers
from counts.auth import TokenVerifier
from counts.conditional import ConditionalCounts
from counts.config import load_config
from counts.db import Database
from counts.load import LoadGauge
from counts.observe import ROUTE_KEY, Observe
from counts.ratelimit import RateLimit


class Resources:
    """What the views need: Postgres, Redis, the token verifier and the settings they use.

    Nothing here opens a socket at construction: connections are made in the worker process
    that first uses them, after gunicorn has forked.
    """

    def __init__(self, config: dict[str, Any]):
        self.db = Database(config["DATABASE_URL"], config["PG_TIMEOUT"], config["PG_POOL_SIZE"])
        self.redis = markers.connect(config["REDIS_URL"], config["REDIS_TIMEOUT"])
        self.tokens = TokenVerifier(config["JWT_SECRET"])
        self.marker_ttl: int = config["MARKER_TTL"]
        self.rate_limit = RateLimit(config["RATE_LIMIT"], config["ANONYMOUS_RATE_LIMIT"])
        self.load = LoadGauge(config["THREADS"], config["POLL_INTERVAL"],
                              config["BUSY_POLL_FACTOR"])
        self.retry_after: int = config["RETRY_AFTER"]
        self.drain_interval: float = config["OUTBOX_DRAIN_INTERVAL"]

    def close(self) -> None:
        """Close pooled Postgres connections and Redis sockets (worker exit, tests)."""
        self.db.close()
        self.redis.close()

    def start_drainer(self):
        """Start this process's outbox drainer thread (call once per worker, after fork)."""
        from counts.outbox import Drainer

        drainer = Drainer(self.db, self.redis, self.marker_ttl, self.drain_interval)
        drainer.start()
        return drainer


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Application factory: settings from the environment, overridden by `config`."""
    app = Flask(__name__, static_folder=None)
    app.config.update(load_config(overrides=config))
    logs.configure()
    app.extensions["counts"] = Resources(app.config)

    from counts import cli, errors
    from counts.views import docs, health, reads, writes

    errors.register_error_handlers(app)
    for blueprint in (reads.bp, writes.bp, health.bp, docs.bp):
        app.register_blueprint(blueprint)
    cli.register(app)

    @app.before_request
    def record_route() -> None:
        """Name the route template for metrics and logs (unmatched paths share one name)."""
        if request.url_rule is not None:
            request.environ[ROUTE_KEY] = request.url_rule.rule

    resources = app.extensions["counts"]
    app.wsgi_app = Observe(ConditionalCounts(app.wsgi_app, resources), resources)
    if app.config["TRUSTED_PROXIES"]:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=app.config["TRUSTED_PROXIES"])
    return app

