"""The outermost WSGI layer: every request, whoever answers it, is timed, counted and logged.

It sits outside the 304 middleware, so the 304s that never enter Flask are observed too.
"""

import itertools
import os
import re
import secrets
import time
from collections.abc import Callable, Iterable

from counts.observability import metrics

# Set by whoever routes the request (Flask, or the 304 middleware): the route *template*, so
# metrics stay a handful of series however many users there are.
ROUTE_KEY = "counts.route"
REQUEST_ID_KEY = "counts.request_id"

# A caller's X-Request-ID is echoed only if it is a sane token; otherwise we make our own.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

class Observe:
    """WSGI middleware: request id, load gauge, Prometheus metrics and one JSON log line."""

    def __init__(self, app: Callable, resources):
        self.app = app
        self.load = resources.load
        self.access_log = resources.access_log
        # Request ids: a random per-process prefix and a counter (unique, and no syscall per
        # request, as uuid4 would make).
        self._id_prefix = f"{os.getpid():x}-{secrets.token_hex(4)}-"
        self._id_counter = itertools.count(1)
        # (route, method, status) -> its metric children: .labels() costs a lock and a lookup.
        self._series: dict[tuple[str, str, str], tuple] = {}

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        started = time.perf_counter()
        request_id = environ.get("HTTP_X_REQUEST_ID", "")
        if not _REQUEST_ID.fullmatch(request_id):
            request_id = f"{self._id_prefix}{next(self._id_counter):x}"
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

    def record(self, environ: dict, status: str, seconds: float, request_id: str) -> None:
        """Count, time and log one answered request (never its headers: tokens stay out)."""
        route = environ.get(ROUTE_KEY, "unmatched")
        method = environ["REQUEST_METHOD"]
        series = self._series.get((route, method, status))
        if series is None:
            series = self._series[route, method, status] = (
                metrics.REQUESTS.labels(route, method, status),
                metrics.REQUEST_SECONDS.labels(route))
        series[0].inc()
        series[1].observe(seconds)
        self.access_log.write(method, route, int(status), seconds, request_id)
