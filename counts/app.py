"""create_app: settings, then the per-process resources, the WSGI stack, and the blueprints."""

import logging

from flask import Flask, request
from werkzeug.middleware.proxy_fix import ProxyFix

from counts import cli
from counts.http import responses
from counts.http.admin import AdminListener, create_admin_app
from counts.http.middleware.cors import Cors
from counts.http.middleware.fastpath import FastPath
from counts.http.middleware.observe import ROUTE_KEY, Observe
from counts.http.middleware.websocket import WebSockets
from counts.http.views import batch, bumps, devices, docs, health, live, preferences, writes
from counts.http.views import counts as counts_views
from counts.observability import logs
from counts.push import providers
from counts.resources import Resources
from counts.settings import Settings

log = logging.getLogger(__name__)

BLUEPRINTS = (counts_views.bp, batch.bp, writes.bp, bumps.bp, live.bp, devices.bp, health.bp,
              docs.bp, preferences.bp)


def create_app(settings: Settings | None = None) -> Flask:
    """The service, on `settings` or those of the environment. Nothing here opens a socket."""
    settings = settings or Settings.from_env()
    app = Flask("counts", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = settings.http.max_body_bytes
    logs.configure(settings.server.log_level)
    resources = app.extensions["counts"] = Resources(settings)
    unknown = settings.unknown(*(module.SETTINGS for module in providers.modules().values()))
    if unknown:
        log.warning("ignoring variables no setting of this version reads: %s", ", ".join(unknown))

    responses.register_error_handlers(app, settings.http.retry_after)
    for blueprint in BLUEPRINTS:
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
    fast_path = FastPath(app.wsgi_app, resources).__call__
    app.wsgi_app = WebSockets(fast_path, resources).__call__  # type: ignore[method-assign]
    if settings.http.cors_origins:  # off by default: not a single dict lookup more per request
        app.wsgi_app = Cors(app.wsgi_app, settings.http.cors_origins).__call__  # type: ignore[method-assign]
    app.wsgi_app = Observe(app.wsgi_app, resources).__call__  # type: ignore[method-assign]
    if settings.http.trusted_proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.http.trusted_proxies)  # type: ignore[method-assign]
    admin = app.extensions["counts.admin"] = create_admin_app(resources)
    app.wsgi_app = AdminListener(app.wsgi_app, admin, resources).__call__  # type: ignore[method-assign]
    return app
