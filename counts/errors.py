"""One error shape for the whole API: RFC 9457 problem+json."""

import json
import logging

from flask import Flask, Response
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

PROBLEM_TYPE_BASE = "https://counts.invalid/problems/"


class Problem(Exception):
    """An error the API reports to its caller as problem+json."""

    status = 400
    title = "Bad request"
    slug = "bad-request"

    def __init__(self, detail: str, headers: dict[str, str] | None = None, **extra):
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
    status, title, slug = 404, "Not found", "not-found"


class Conflict(Problem):
    status, title, slug = 409, "Conflict", "conflict"


class InvalidInput(Problem):
    status, title, slug = 422, "Invalid input", "invalid-input"


class TooManyRequests(Problem):
    status, title, slug = 429, "Too many requests", "too-many-requests"


class AtCapacity(Problem):
    """This worker holds as many live connections as it may (COUNTS_MAX_STREAMS), or is stopping."""

    status, title, slug = 503, "Service unavailable", "at-capacity"


class UpgradeRequired(Problem):
    status, title, slug = 426, "Upgrade required", "upgrade-required"


class NotImplementedHere(Problem):
    status, title, slug = 501, "Not implemented", "not-implemented"


class DependencyUnavailable(Problem):
    """Postgres (or, where nothing else can answer, Redis) cannot be reached right now."""

    status, title, slug = 503, "Service unavailable", "dependency-unavailable"


def problem_response(status: int, title: str, detail: str, slug: str,
                     headers: dict[str, str] | None = None, **extra) -> Response:
    """Render a problem+json response."""
    body = {"type": PROBLEM_TYPE_BASE + slug, "title": title, "status": status,
            "detail": detail, **extra}
    return Response(json.dumps(body), status=status, headers=headers,
                    mimetype="application/problem+json")


def register_error_handlers(app: Flask, retry_after_seconds: int) -> None:
    """Turn every error, ours or Werkzeug's, into problem+json; never a stack trace."""
    retry_after = str(retry_after_seconds)

    @app.errorhandler(Problem)
    def handle_problem(error: Problem) -> Response:
        headers = dict(error.headers)
        if error.status == 503:
            headers.setdefault("Retry-After", retry_after)
        return problem_response(error.status, error.title, error.detail, error.slug,
                                headers, **error.extra)

    @app.errorhandler(ValidationError)
    def handle_validation(error: ValidationError) -> Response:
        return problem_response(422, InvalidInput.title, "The request body is not valid.",
                                InvalidInput.slug, errors=error.normalized_messages())

    @app.errorhandler(HTTPException)
    def handle_http(error: HTTPException) -> Response:
        headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
        title = error.name
        slug = title.lower().replace(" ", "-")
        return problem_response(error.code or 500, title, error.description or title, slug,
                                headers)

    @app.errorhandler(Exception)
    def handle_unexpected(error: Exception) -> Response:
        # Logged with its traceback for us; the caller gets the shape, not the internals.
        log.exception("unhandled error")
        return problem_response(500, "Internal server error",
                                "The server failed to answer this request.", "internal")
