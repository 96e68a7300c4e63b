"""The errors the service reports to its callers, as plain exception types (no Flask here: the
push worker and the data layers raise them too). counts.http.responses renders them as RFC 9457
problem+json."""

from typing import Any


class Problem(Exception):
    """An error the API reports to its caller as problem+json: its status (whose reason phrase is
    the problem's title, counts.http.responses) and its type (slug), which says which problem."""

    status = 400
    slug = "bad-request"

    def __init__(self, detail: str, headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


class Unauthorized(Problem):
    status, slug = 401, "unauthorized"

    def __init__(self, detail: str):
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="counts"'})


class Forbidden(Problem):
    status, slug = 403, "forbidden"


class NotFound(Problem):
    status, slug = 404, "not-found"


class InvalidInput(Problem):
    status, slug = 422, "invalid-input"


class TooManyRequests(Problem):
    status, slug = 429, "too-many-requests"


class AtCapacity(Problem):
    """This worker holds as many live connections as it may (COUNTS_MAX_STREAMS), or is stopping."""

    status, slug = 503, "at-capacity"


class UpgradeRequired(Problem):
    status, slug = 426, "upgrade-required"


class NotImplementedHere(Problem):
    status, slug = 501, "not-implemented"


class DependencyUnavailable(Problem):
    """Postgres (or, where nothing else can answer, Redis) cannot be reached right now."""

    status, slug = 503, "dependency-unavailable"
