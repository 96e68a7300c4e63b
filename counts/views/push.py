"""Push devices: register, list (tokens masked), delete; the Web Push application server key."""

import json

from flask import Blueprint, Response

from counts import schemas
from counts.auth import require_user_or_service
from counts.errors import NotFound
from counts.push import devices
from counts.views import authenticate, load_body, parse_uuid, resources

bp = Blueprint("push", __name__)


def json_response(body: dict, status: int = 200) -> Response:
    """A JSON response."""
    return Response(json.dumps(body), status=status, mimetype="application/json")


@bp.post("/v1/users/<user_id>/devices")
def register_device(user_id: str) -> Response:
    """Register a device for a user: 201 with a new id, or 200 with the id its token already had."""
    principal = authenticate()
    uid = parse_uuid(user_id, "user_id")
    require_user_or_service(principal, uid)
    body = load_body(schemas.device_registration)
    res = resources()
    token, settings = res.push.check(body)
    device_id, created = res.db.run(devices.register, uid, body["platform"], token, settings,
                                    res.push.max_devices)
    return json_response({"device_id": str(device_id)}, 201 if created else 200)


@bp.get("/v1/users/<user_id>/devices")
def list_devices(user_id: str) -> Response:
    """A user's devices, each token shown only as a short hash."""
    principal = authenticate()
    uid = parse_uuid(user_id, "user_id")
    require_user_or_service(principal, uid)
    return json_response({"devices": resources().db.read(devices.list_devices, uid)})


@bp.delete("/v1/users/<user_id>/devices/<device_id>")
def delete_device(user_id: str, device_id: str) -> Response:
    """Forget a device (the app signed out, or the user turned push off)."""
    principal = authenticate()
    uid = parse_uuid(user_id, "user_id")
    require_user_or_service(principal, uid)
    resources().db.run(devices.remove, uid, parse_uuid(device_id, "device_id"))
    return Response(status=204)


@bp.get("/v1/push/webpush-key")
def webpush_key() -> Response:
    """The applicationServerKey for pushManager.subscribe (public: it is a public key)."""
    key = resources().push.webpush_key
    if key is None:
        raise NotFound("Web Push is not configured on this service.")
    return json_response({"public_key": key})
