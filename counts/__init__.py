"""counts: unread-message counts that answer "nothing changed" from Redis, not Postgres."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from counts.settings import Settings


def create_app(settings: "Settings | None" = None) -> "Flask":
    """Application factory: `settings`, or those of the environment."""
    # Imported here, not at the top: `import counts.client` (for services that only poll) must
    # not drag in Flask, psycopg2 and the rest of the server.
    from flask import Flask, request
    from werkzeug.middleware.proxy_fix import ProxyFix

    from counts import cli, errors, logs
    from counts.admin import AdminListener, create_admin_app
    from counts.conditional import ConditionalCounts
    from counts.cors import Cors
    from counts.live.ws import WebSockets
    from counts.observe import ROUTE_KEY, Observe
    from counts.resources import Resources
    from counts.settings import Settings
    from counts.views import docs, health, live, markers, push, reads, writes

    settings = settings or Settings.from_env()
    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = settings.http.max_body_bytes
    logs.configure(settings.server.log_level)
    resources = app.extensions["counts"] = Resources(settings)

    errors.register_error_handlers(app, settings.http.retry_after)
    for blueprint in (reads.bp, writes.bp, markers.bp, live.bp, push.bp, health.bp, docs.bp):
        app.register_blueprint(blueprint)
    cli.register(app)

    @app.before_request
    def record_route() -> None:
        """Name the route template for metrics and logs (unmatched paths share one name)."""
        if request.url_rule is not None:
            request.environ[ROUTE_KEY] = request.url_rule.rule

    # Each layer gets the next as a bound method, not as the object: CPython 3.11 runs a call of a
    # function or bound method in the caller's C frame, a call of an object with __call__ in a
    # new one, and a greenlet holding a live connection keeps a copy of its C stack while it
    # waits (about 750 bytes a layer, measured with greenlet's _stack_saved).
    conditional = ConditionalCounts(app.wsgi_app, resources).__call__
    app.wsgi_app = WebSockets(conditional, resources).__call__
    if settings.http.cors_origins:  # off by default: not a single dict lookup more per request
        app.wsgi_app = Cors(app.wsgi_app, settings.http.cors_origins).__call__
    app.wsgi_app = Observe(app.wsgi_app, resources).__call__
    if settings.http.trusted_proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.http.trusted_proxies)
    admin = app.extensions["counts.admin"] = create_admin_app(resources)
    app.wsgi_app = AdminListener(app.wsgi_app, admin, resources).__call__
    return app
