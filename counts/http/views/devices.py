"""Push devices: register, list (tokens masked), delete; the Web Push application server key, and
a browser's re-subscription (pushsubscriptionchange)."""

from uuid import UUID

from flask import Blueprint, Response, request

from counts.errors import NotFound
from counts.http.auth import parse_path_uuid, requires_user
from counts.http.responses import json_response
from counts.http.views import load_json, resources
from counts.push import devices

bp = Blueprint("push", __name__)


@bp.post("/v1/users/<user_id>/devices")
@requires_user
def register_device(user_id: UUID) -> Response:
    """Register a device for a user: 201 with a new id, or 200 with the id its token already had."""
    res = resources()
    platform, token, settings = res.push.accept(load_json())
    device_id, created = res.db.run(devices.register, user_id, platform, token, settings,
                                    res.push.max_devices)
    return json_response({"device_id": str(device_id)}, 201 if created else 200)


@bp.get("/v1/users/<user_id>/devices")
@requires_user
def list_devices(user_id: UUID) -> Response:
    """A user's devices, each token shown only as a short hash."""
    res = resources()
    return json_response({"devices": res.db.read(res.push.list_devices, user_id)})


@bp.delete("/v1/users/<user_id>/devices/<device_id>")
@requires_user
def delete_device(user_id: UUID, device_id: str) -> Response:
    """Forget a device (the app signed out, or the user turned push off)."""
    resources().db.run(devices.remove, user_id, parse_path_uuid(device_id, "device_id"))
    return Response(status=204)


@bp.get("/v1/push/webpush-key")
def webpush_key() -> Response:
    """The applicationServerKey for pushManager.subscribe (public: it is a public key)."""
    key = resources().push.webpush_key
    if key is None:
        raise NotFound("Web Push is not configured on this service.")
    return json_response({"public_key": key})


@bp.post("/v1/push/webpush/resubscribe")
def resubscribe_webpush() -> Response:
    """A service worker's pushsubscriptionchange: replace its subscription, authorised by the old
    one (its endpoint and auth secret), since no user token is at hand there."""
    res = resources()
    res.rate_limit.check_anonymous(res.redis, request.remote_addr or "unknown",
                                   res.load.poll_interval())
    old_endpoint, old_auth, token, settings = res.push.accept_resubscription(load_json())
    device_id = res.db.run(devices.resubscribe, old_endpoint, old_auth, token, settings)
    return json_response({"device_id": str(device_id)})
