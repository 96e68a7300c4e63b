"""The outermost WSGI layer: every request, whoever answers it, is timed, counted and logged.

It sits outside the 304 middleware, so the 304s that never enter Flask are observed too.
"""

import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable

from counts import metrics

# Set by whoever routes the request (Flask, or the 304 middleware): the route *template*, so
# metrics stay a handful of series however many users there are.
ROUTE_KEY = "counts.route"
REQUEST_ID_KEY = "counts.request_id"

# A caller's X-Request-ID is echoed only if it is a sane token; otherwise we make our own.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

access_log = logging.getLogger("counts.access")


class Observe:
    """WSGI middleware: request id, load gauge, Prometheus metrics and one JSON log line."""

    def __init__(self, app: Callable, resources):
        self.app = app
        self.load = resources.load

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        started = time.perf_counter()
        request_id = environ.get("HTTP_X_REQUEST_ID", "")
        if not _REQUEST_ID.fullmatch(request_id):
            request_id = uuid.uuid4().hex
        environ[REQUEST_ID_KEY] = request_id
        status = []

        def start_with_id(status_line: str, headers: list, exc_info=None):
            status.append(status_line)
            headers.append(("X-Request-ID", request_id))
            return start_response(status_line, headers, exc_info)

        self.load.started()
        try:
            return self.app(environ, start_with_id)
        finally:
            self.load.finished()
            self.record(environ, status[-1][:3] if status else "500",
                        time.perf_counter() - started, request_id)

    @staticmethod
    def record(environ: dict, status: str, seconds: float, request_id: str) -> None:
        """Count, time and log one answered request (never its headers: tokens stay out)."""
        route = environ.get(ROUTE_KEY, "unmatched")
        method = environ["REQUEST_METHOD"]
        metrics.REQUESTS.labels(route, method, status).inc()
        metrics.REQUEST_SECONDS.labels(route).observe(seconds)
        if access_log.isEnabledFor(logging.INFO):
            access_log.info("request", extra={
                "method": method, "route": route, "status": int(status),
                "duration_ms": round(seconds * 1000, 3), "request_id": request_id})
