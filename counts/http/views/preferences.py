"""A user's own settings of their counts (the badge policy): in both modes, since they live in
our schema, not the app's."""

from flask import Blueprint, Response

from counts.bumps import outbox
from counts.http import schemas
from counts.http.auth import authorize, parse_path_uuid, requires_caller
from counts.http.responses import json_response
from counts.http.views import load_body, resources
from counts.identity import Principal
from counts.sources import preferences

bp = Blueprint("preferences", __name__)


@bp.patch("/v1/users/<user_id>/settings")
@requires_caller
def update_settings(user_id: str, principal: Principal) -> Response:
    """Set the user's badge policy (that user, or a service); null goes back to the server's."""
    uid = parse_path_uuid(user_id, "user_id")
    authorize(principal, uid)
    body = load_body(schemas.user_settings)
    res = resources()
    state = outbox.write_then_bump(res.db, res.redis, res.marker_ttl, preferences.set_badge_policy,
                                   uid, body["badge_policy"], res.source.unread_counts,
                                   wal=res.postgres.wal)
    return json_response({"user_id": str(uid), **state})
