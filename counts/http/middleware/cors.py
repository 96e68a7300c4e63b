"""CORS for browsers on other origins (COUNTS_CORS_ORIGINS), on every answer.

A WSGI layer outside the 304 middleware, so the 304s that never enter Flask, the streams and the
problem+json errors all carry the headers a browser needs to read them. Preflights are answered
here. No credentials: tokens travel in the Authorization header (or a stream ticket), never in
cookies, so any allowed origin is echoed as it came.
"""

from collections.abc import Callable, Iterable, Sequence

from counts.http.middleware.observe import ROUTE_KEY

ALLOW_METHODS = "GET, HEAD, POST, DELETE"
ALLOW_HEADERS = "Authorization, If-None-Match, Prefer, Content-Type, X-Request-ID, Last-Event-ID"
EXPOSE_HEADERS = "ETag, X-Poll-Interval, Retry-After, Preference-Applied, X-Request-ID"
PREFLIGHT_MAX_AGE = "600"  # seconds a browser may reuse a preflight's answer


class Cors:
    """WSGI middleware: CORS headers for allowed origins, `Vary: Origin` on every answer."""

    def __init__(self, app: Callable, origins: Sequence[str]):
        self.app = app
        self.any_origin = "*" in origins
        self.origins = frozenset(origins)

    def allowed(self, origin: str | None) -> bool:
        """Whether a request from `origin` may read our answers."""
        return origin is not None and (self.any_origin or origin in self.origins)

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        origin: str = environ.get("HTTP_ORIGIN", "")
        if not self.allowed(origin or None):
            extra = [("Vary", "Origin")]
        elif environ["REQUEST_METHOD"] == "OPTIONS" and \
                "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in environ:
            environ[ROUTE_KEY] = "CORS preflight"
            start_response("204 No Content", [
                ("Access-Control-Allow-Origin", origin), ("Access-Control-Allow-Methods", ALLOW_METHODS),
                ("Access-Control-Allow-Headers", ALLOW_HEADERS),
                ("Access-Control-Max-Age", PREFLIGHT_MAX_AGE), ("Vary", "Origin")])
            return []
        else:
            extra = [("Access-Control-Allow-Origin", origin),
                     ("Access-Control-Expose-Headers", EXPOSE_HEADERS), ("Vary", "Origin")]

        def start_with_cors(status: str, headers: list, exc_info=None):
            headers.extend(extra)
            return start_response(status, headers, exc_info)

        return self.app(environ, start_with_cors)
