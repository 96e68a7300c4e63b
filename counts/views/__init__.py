"""HTTP views: parse, authorize, call the data layer, respond. Nothing else lives here."""

import json
from uuid import UUID

from flask import Response, current_app, request
from marshmallow import Schema
from werkzeug.exceptions import BadRequest, HTTPException, RequestEntityTooLarge

from counts import schemas
from counts.auth import Principal
from counts.conditional import REQUESTS_KEY
from counts.errors import Problem, Unauthorized


def resources():
    """This app's Postgres, Redis and token verifier (see counts.resources)."""
    return current_app.extensions["counts"]


def authenticate() -> Principal:
    """The caller proven by the Authorization header (or a 401), within its rate limit (or a 429)."""
    res = resources()
    try:
        principal = res.tokens.verify(request.headers.get("Authorization"))
    except Unauthorized:
        res.rate_limit.check_anonymous(res.redis, request.remote_addr or "unknown",
                                       res.load.poll_interval())
        raise
    if not principal.is_service:
        res.rate_limit.check_user(res.redis, principal.user_id, res.load.poll_interval(),
                                  counted=request.environ.get(REQUESTS_KEY))
    return principal


def parse_uuid(value: str, name: str) -> UUID:
    """A path segment that must be a UUID, or a 400 that says which one."""
    try:
        return schemas.parse_uuid(value)
    except ValueError:
        raise Problem(f"{name} must be a UUID, got {value[:64]!r}.") from None


def load_body(schema: Schema) -> dict:
    """The JSON body validated by `schema` (400 bad JSON, 415 not JSON, 422 invalid)."""
    try:
        body = request.get_data(cache=True)
    except HTTPException:
        raise
    except Exception as error:  # noqa: BLE001 - whatever the WSGI server's input stream raises
        # (gunicorn: a bad chunk size or terminator) means the body was malformed on the wire.
        raise BadRequest(f"The request body could not be read ({type(error).__name__}).") from None
    limit = request.max_content_length
    if request.content_length is None and limit is not None and len(body) >= limit:
        # A chunked body is cut at the limit without complaint; one that reached it was larger.
        raise RequestEntityTooLarge()
    try:
        data = request.get_json()
    except RecursionError:
        raise BadRequest("The JSON body is nested too deeply.") from None
    return schema.load(data)


def json_response(body: dict, status: int = 200) -> Response:
    """A JSON response."""
    return Response(json.dumps(body), status=status, mimetype="application/json")
