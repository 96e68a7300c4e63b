"""The errors the service reports to its callers, as plain exception types (no Flask here: the
push worker and the data layers raise them too). counts.http.problems renders them as RFC 9457
problem+json."""

from typing import Any


class Problem(Exception):
    """An error the API reports to its caller as problem+json. Titles are the status's reason
    phrase (RFC 9110), as Werkzeug's own errors have them; the type (slug) says which problem."""

    status = 400
    title = "Bad Request"
    slug = "bad-request"

    def __init__(self, detail: str, headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


class Unauthorized(Problem):
    status, title, slug = 401, "Unauthorized", "unauthorized"

    def __init__(self, detail: str):
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="counts"'})


class Forbidden(Problem):
    status, title, slug = 403, "Forbidden", "forbidden"


class NotFound(Problem):
    status, title, slug = 404, "Not Found", "not-found"


class InvalidInput(Problem):
    status, title, slug = 422, "Unprocessable Content", "invalid-input"


class TooManyRequests(Problem):
    status, title, slug = 429, "Too Many Requests", "too-many-requests"


class AtCapacity(Problem):
    """This worker holds as many live connections as it may (COUNTS_MAX_STREAMS), or is stopping."""

    status, title, slug = 503, "Service Unavailable", "at-capacity"


class UpgradeRequired(Problem):
    status, title, slug = 426, "Upgrade Required", "upgrade-required"


class NotImplementedHere(Problem):
    status, title, slug = 501, "Not Implemented", "not-implemented"


class DependencyUnavailable(Problem):
    """Postgres (or, where nothing else can answer, Redis) cannot be reached right now."""

    status, title, slug = 503, "Service Unavailable", "dependency-unavailable"
