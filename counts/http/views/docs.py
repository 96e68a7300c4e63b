"""The API's own description: GET /openapi.json, built once when the app is created."""

from flask import Blueprint, Response, current_app
from flask.blueprints import BlueprintSetupState

from counts.http import openapi

bp = Blueprint("docs", __name__)

SPEC_KEY = "counts.openapi"


@bp.record_once
def build_once(state: BlueprintSetupState) -> None:
    """Serialize the document when the blueprint is registered, not on every request."""
    writable = state.app.extensions["counts"].source.writable
    state.app.extensions[SPEC_KEY] = openapi.spec_bytes(writable)


@bp.get("/openapi.json")
def get_openapi() -> Response:
    """The OpenAPI 3 document (no auth: it describes the API, it holds no data)."""
    return Response(current_app.extensions[SPEC_KEY], mimetype="application/json")
