"""HTTP views: parse, call the data layer, respond; who may call each says its decorator
(counts.http.auth). Nothing else lives here."""

import json
from typing import Any

from flask import current_app, request
from marshmallow import Schema
from werkzeug.exceptions import BadRequest, HTTPException, RequestEntityTooLarge, UnsupportedMediaType

from counts.errors import Problem


def resources():
    """This app's Postgres, Redis and token verifier (see counts.resources)."""
    return current_app.extensions["counts"]


def load_body(schema: Schema) -> dict:
    """The JSON body validated by `schema` (400 bad JSON, 415 not JSON, 422 invalid)."""
    return schema.load(load_json())


def load_json() -> Any:
    """The JSON body, not yet validated (400 bad JSON, 413 too large, 415 not JSON)."""
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
    if not request.is_json:
        raise UnsupportedMediaType("Send the body as JSON, with Content-Type: application/json.")
    try:
        data = json.loads(body)
    except RecursionError:
        raise BadRequest("The JSON body is nested too deeply.") from None
    except UnicodeDecodeError:
        raise Problem("The request body is not valid JSON: it is not UTF-8 text.") from None
    except ValueError as error:  # json.JSONDecodeError says where
        raise Problem(f"The request body is not valid JSON: {error}.") from None
    return data

