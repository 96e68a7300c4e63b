"""How the API answers in JSON: its bodies, and one error shape for all of it (RFC 9457
problem+json, for our errors and Werkzeug's)."""

import json
import logging
from http import HTTPStatus

from flask import Flask, Response
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from counts.errors import InvalidInput, Problem

log = logging.getLogger(__name__)

PROBLEM_TYPE_BASE = "https://counts.invalid/problems/"
# RFC 9110 renamed these; Python's http module (before 3.13) and Werkzeug keep the old names.
RFC_9110_PHRASES = {413: "Content Too Large", 422: "Unprocessable Content"}


def json_response(body: dict, status: int = 200, headers=None) -> Response:
    """A JSON answer."""
    return Response(json.dumps(body), status=status, headers=headers, mimetype="application/json")


def reason(status: int) -> str:
    """The status's reason phrase as RFC 9110 names it: the title of every problem."""
    return RFC_9110_PHRASES.get(status) or HTTPStatus(status).phrase


def problem_response(status: int, detail: str, slug: str,
                     headers: dict[str, str] | None = None, **extra) -> Response:
    """Render a problem+json response."""
    body = {"type": PROBLEM_TYPE_BASE + slug, "title": reason(status), "status": status,
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
        return problem_response(error.status, error.detail, error.slug, headers, **error.extra)

    @app.errorhandler(ValidationError)
    def handle_validation(error: ValidationError) -> Response:
        return problem_response(InvalidInput.status, "The request body is not valid.",
                                InvalidInput.slug, errors=error.normalized_messages())

    @app.errorhandler(HTTPException)
    def handle_http(error: HTTPException) -> Response:
        headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
        status = error.code or 500
        slug = reason(status).lower().replace(" ", "-")
        return problem_response(status, error.description or reason(status), slug, headers)

    @app.errorhandler(Exception)
    def handle_unexpected(error: Exception) -> Response:
        # Logged with its traceback for us; the caller gets the shape, not the internals.
        log.exception("unhandled error")
        return problem_response(500, "The server failed to answer this request.", "internal")
