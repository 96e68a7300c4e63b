"""The device registry: validation, the Web Push host allowlist, masked tokens, ownership."""

import os

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from counts.push.providers.webpush import HostRules
from tests.support.api import assert_problem, new_user
from tests.support.push import subscribe
from tests.support.pushfakes.webpush import b64url

APNS_TOKEN = "ab" * 32


def register(api, user, body, headers=None):
    return api.client.post(f"/v1/users/{user}/devices", json=body,
                           headers=headers or api.tokens.user(user))


def webpush_body(endpoint: str, p256dh: str | None = None, auth: str | None = None) -> dict:
    """A subscription body; keys from a real P-256 key unless given."""
    if p256dh is None:
        point = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        p256dh = b64url(point)
    auth = auth or b64url(os.urandom(16))
    return {"platform": "webpush",
            "subscription": {"endpoint": endpoint, "expirationTime": None,
                             "keys": {"p256dh": p256dh, "auth": auth}}}


def test_the_same_token_again_is_200_with_the_same_id(push_api, push_service):
    user = new_user()
    body = webpush_body(push_service.origin + "/push/v2/abc")
    first = register(push_api, user, body)
    again = register(push_api, user, body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.get_json() == again.get_json()


def test_a_token_registered_by_another_user_moves_to_the_new_one(push_api, push_service):
    before, after = new_user(), new_user()
    body = webpush_body(push_service.origin + "/push/v2/handed-down-phone")
    old_id = register(push_api, before, body).get_json()["device_id"]
    moved = register(push_api, after, body)
    assert moved.status_code == 201 and moved.get_json()["device_id"] != old_id
    listed = push_api.client.get(f"/v1/users/{before}/devices", headers=push_api.tokens.user(before))
    assert listed.get_json() == {"devices": []}


def test_list_masks_tokens_and_delete_forgets(push_api, push_service):
    user = new_user()
    subscriber = subscribe(push_api, push_service, user)
    listed = push_api.client.get(f"/v1/users/{user}/devices", headers=push_api.tokens.user(user))
    assert listed.status_code == 200
    [device] = listed.get_json()["devices"]
    assert device["device_id"] == subscriber.device_id and device["platform"] == "webpush"
    assert device["endpoint_host"] == "127.0.0.1"
    assert device["token_hint"].startswith("sha256:") and len(device["token_hint"]) == 19
    assert subscriber.id not in listed.get_data(as_text=True)  # never the token, not even in part
    path = f"/v1/users/{user}/devices/{subscriber.device_id}"
    assert push_api.client.delete(path, headers=push_api.tokens.user(user)).status_code == 204
    assert_problem(push_api.client.delete(path, headers=push_api.tokens.user(user)), 404)


def test_only_that_user_or_a_service_may_touch_their_devices(push_api, push_service):
    owner, other = new_user(), new_user()
    body = webpush_body(push_service.origin + "/push/v2/owned")
    assert_problem(register(push_api, owner, body, push_api.tokens.user(other)), 403)
    assert register(push_api, owner, body, push_api.tokens.service()).status_code == 201
    for method in ("get",):
        assert_problem(getattr(push_api.client, method)(
            f"/v1/users/{owner}/devices", headers=push_api.tokens.user(other)), 403)
    assert_problem(push_api.client.get(f"/v1/users/{owner}/devices"), 401)


@pytest.mark.parametrize("endpoint", [
    "http://{host}/push/v2/x",                   # not https
    "https://evil.example/push/v2/x",            # not a push service
    "https://user:pw@{host}/push/v2/x",          # credentials
    "https://127.0.0.1:1/push/v2/x",             # an allowed host on another port
    "https://169.254.169.254/latest/meta-data",  # the classic request-forgery target
])
def test_a_webpush_endpoint_off_the_allowlist_is_422(push_api, push_service, endpoint):
    body = webpush_body(endpoint.format(host=push_service.server.host))
    assert_problem(register(push_api, new_user(), body), 422)


@pytest.mark.parametrize(("field", "value"), [
    ("p256dh", b64url(b"\x04" + b"\x01" * 64)),  # 65 bytes, but not a point on the curve
    ("p256dh", "not base64!"),
    ("auth", b64url(b"short")),
])
def test_bad_subscription_keys_are_422(push_api, push_service, field, value):
    body = webpush_body(push_service.origin + "/push/v2/k", **{field: value})
    assert_problem(register(push_api, new_user(), body), 422)


@pytest.mark.parametrize("body", [
    {"platform": "apns", "token": APNS_TOKEN, "topic": "com.example.chat"},
    {"platform": "fcm", "token": "fcm-token:APA91b"},
])
def test_a_platform_that_is_not_configured_is_422(push_api, body):
    problem = assert_problem(register(push_api, new_user(), body), 422)
    assert "not configured" in problem["detail"]


@pytest.mark.parametrize("body", [
    {"platform": "carrier-pigeon", "token": "x"},
    {"platform": "apns", "token": "xyz", "topic": "com.example.chat"},
    {"platform": "apns", "token": APNS_TOKEN, "topic": "com.example.chat", "environment": "staging"},
    {"platform": "fcm", "token": "has space"},
    {"platform": "webpush"},
    ["not", "an", "object"],
    {"platform": [], "": None},  # found by schemathesis: an unhashable platform was a 500
    {"platform": {"name": "fcm"}},
])
def test_invalid_registrations_are_422(push_api, body):
    assert_problem(register(push_api, new_user(), body), 422)


def test_webpush_key_is_404_when_web_push_is_not_configured(client):
    assert_problem(client.get("/v1/push/webpush-key"), 404)


def test_a_user_keeps_the_newest_devices_only(app_factory, push_config, push_service, tokens):
    from tests.support.api import Api

    api = Api(app_factory(**{**push_config, "COUNTS_PUSH_MAX_DEVICES": 2}).test_client(), tokens)
    user = new_user()
    ids = [register(api, user, webpush_body(f"{push_service.origin}/push/v2/{n}")).get_json()["device_id"]
           for n in range(3)]
    listed = api.client.get(f"/v1/users/{user}/devices", headers=tokens.user(user)).get_json()["devices"]
    assert {device["device_id"] for device in listed} == set(ids[1:])


@pytest.mark.parametrize(("rules", "endpoint", "allowed"), [
    (["fcm.googleapis.com"], "https://fcm.googleapis.com/fcm/send/x", True),
    (["fcm.googleapis.com"], "https://fcm.googleapis.com:443/fcm/send/x", True),
    (["fcm.googleapis.com"], "https://fcm.googleapis.com:8443/x", False),
    (["fcm.googleapis.com"], "https://fcm.googleapis.com.evil.example/x", False),
    (["*.notify.windows.com"], "https://wns2-par02p.notify.windows.com/w/?token=x", True),
    (["*.notify.windows.com"], "https://notify.windows.com/w/", False),
    (["*.notify.windows.com"], "https://evilnotify.windows.com/w/", False),
    (["127.0.0.1:8443"], "https://127.0.0.1:8443/push", True),
    (["127.0.0.1:8443"], "https://127.0.0.1/push", False),
    (["web.push.apple.com"], "https://web.push.apple.com:99999/x", False),
])
def test_host_rules(rules, endpoint, allowed):
    assert HostRules(rules).allows(endpoint) is allowed
