"""Apple Push Notification service: the HTTP/2 provider API with token-based authentication.

One httpx client (HTTP/2, kept-open connections, many streams on each) for both of Apple's hosts;
the device's registered environment picks production or sandbox. The provider token is an ES256
JWT (`kid` = COUNTS_APNS_KEY_ID, `iss` = COUNTS_APNS_TEAM_ID, `iat`), reused for 40 minutes:
Apple refuses one older than an hour (ExpiredProviderToken) and refreshes more often than every
20 minutes (TooManyProviderTokenUpdates).
"""

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from marshmallow import Schema, fields, validate

from counts.errors import InvalidInput
from counts.push.devices import Device
from counts.push.payload import COLLAPSE_KEY, Push
from counts.push.providers import (
    ACCEPTED,
    FAILED,
    GONE,
    RETRY,
    Outcome,
    http_client,
    retry_after,
    transport_failure,
)
from counts.settings import PushSettings, SettingsError
from counts.settings.parse import setting, text, text_or_default, words


@dataclass(frozen=True)
class ApnsSettings:
    """Apple Push Notification service: the token-signing key Apple gave, and which apps."""

    key_file: str | None = setting("COUNTS_APNS_KEY_FILE", None, "The .p8 signing key; set (with "
                                   "the two below), it turns APNs on.", text)
    key_id: str | None = setting("COUNTS_APNS_KEY_ID", None, "That key's id.", text)
    team_id: str | None = setting("COUNTS_APNS_TEAM_ID", None, "The Apple developer team id.", text)
    host: str = setting("COUNTS_APNS_HOST", "api.push.apple.com", "Apple's production host "
                        "(host[:port]; a fake's or a proxy's in tests).", text_or_default)
    sandbox_host: str = setting("COUNTS_APNS_SANDBOX_HOST", "api.sandbox.push.apple.com",
                                "Apple's sandbox host.", text_or_default)
    topics: tuple[str, ...] = setting("COUNTS_APNS_TOPICS", (), "Bundle ids devices may register "
                                      "for, comma-separated (empty: any).", words)

    def __post_init__(self) -> None:
        given = [self.key_file, self.key_id, self.team_id]
        if any(given) and not all(given):
            raise SettingsError("Set all of COUNTS_APNS_KEY_FILE, COUNTS_APNS_KEY_ID and "
                                "COUNTS_APNS_TEAM_ID, or none of them")

    @property
    def configured(self) -> bool:
        """Whether this service pushes to Apple devices."""
        return self.key_file is not None


class ApnsDevice(Schema):
    """`POST /v1/users/{id}/devices` for an Apple device."""

    platform = fields.String(required=True, validate=validate.Equal("apns"))
    # 32 bytes today; Apple asks providers not to assume the length.
    token = fields.String(required=True, validate=validate.Regexp(r"^(?:[0-9a-fA-F]{2}){32,100}$"))
    topic = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9.\-]{0,154}$"))
    environment = fields.String(load_default="production",
                                validate=validate.OneOf(["production", "sandbox"]))


def accept(body: dict, own: ApnsSettings) -> tuple[str, dict]:
    """The (token, settings) to store for a valid registration, or 422 for another app."""
    if own.topics and body["topic"] not in own.topics:
        raise InvalidInput(f"APNs topic {body['topic']!r} is not one of this service's apps.")
    return body["token"].lower(), {"topic": body["topic"], "environment": body["environment"]}


def shown(token: str, settings: dict) -> dict:
    """What the device list shows of an Apple device, besides its token's hint."""
    return {"topic": settings.get("topic"), "environment": settings.get("environment")}


PLATFORM = "apns"
SETTINGS = ApnsSettings
REGISTRATION = ApnsDevice


TOKEN_LIFETIME = 40 * 60
OTHER = {"production": "sandbox", "sandbox": "production"}
# The notification's text comes from the app's Localizable.strings (no message bodies are pushed);
# a Notification Service Extension may fetch and show the message itself (mutable-content).
ALERT_LOC_KEY = "COUNTS_NEW_MESSAGE"


def aps(push: Push) -> dict:
    """The `aps` dictionary: the badge always; an alert, sound and thread for a new message."""
    body: dict = {"badge": push.icon_badge}
    if push.alert:
        body.update(alert={"loc-key": ALERT_LOC_KEY, "loc-args": [str(push.icon_badge)]},
                    sound="default", **{"mutable-content": 1})
        if push.conversation_id:
            body["thread-id"] = push.conversation_id
    return body


class APNs:
    """Pushes to Apple devices."""

    name = "apns"

    def __init__(self, key: ec.EllipticCurvePrivateKey, key_id: str, team_id: str,
                 hosts: dict[str, str], client: httpx.Client, clock=time.time):
        self.key, self.key_id, self.team_id = key, key_id, team_id
        self.hosts, self.client, self.clock = hosts, client, clock
        self._token: tuple[str, float] | None = None  # (JWT, issued at)
        self._lock = threading.Lock()

    def destination(self, device: Device) -> str:
        """Apple's host for the device's environment."""
        return self.hosts[device.settings.get("environment", "production")]

    def provider_token(self, stale: str | None = None) -> str:
        """The current JWT; a new one after TOKEN_LIFETIME, or if Apple called `stale` expired."""
        with self._lock:
            now = self.clock()
            if self._token is None or now - self._token[1] >= TOKEN_LIFETIME or self._token[0] == stale:
                issued = int(now)
                self._token = (jwt.encode({"iss": self.team_id, "iat": issued}, self.key,
                                          algorithm="ES256", headers={"kid": self.key_id}), issued)
            return self._token[0]

    def close(self) -> None:
        """Close the kept-open connections."""
        self.client.close()

    def send(self, device: Device, push: Push) -> Outcome:
        """Push to the device's environment; on BadDeviceToken, learn whether it is the other one's."""
        environment = device.settings.get("environment", "production")
        outcome, reason = self._post(environment, device, push)
        if reason != "BadDeviceToken":
            return outcome
        # BadDeviceToken means a bad token *or* the wrong environment (a development build's
        # token sent to production): the device is gone only if the other environment agrees.
        other, other_reason = self._post(OTHER[environment], device, push)
        if other.kind == ACCEPTED:
            return Outcome(ACCEPTED, other.detail, settings={"environment": OTHER[environment]})
        if other_reason == "BadDeviceToken":
            return Outcome(GONE, "BadDeviceToken in both environments")
        return other

    def _post(self, environment: str, device: Device, push: Push) -> tuple[Outcome, str]:
        """One request (plus one more with a fresh token if Apple said ours expired)."""
        url = f"https://{self.hosts[environment]}/3/device/{device.token}"
        body = json.dumps({"aps": aps(push), "counts": push.body()}, separators=(",", ":"))
        token = self.provider_token()
        for _ in range(2):
            headers = {
                "authorization": f"bearer {token}",
                "apns-topic": device.settings["topic"],
                "apns-push-type": "alert",  # alerts and badge updates alike
                # 10: now; 5: when the device is awake anyway (a badge can wait a little).
                "apns-priority": "10" if push.alert else "5",
                "apns-expiration": str(int(push.expires_at)),
                "apns-collapse-id": COLLAPSE_KEY,  # a newer push replaces an undelivered one
            }
            try:
                response = self.client.post(url, content=body, headers=headers)
            except httpx.HTTPError as error:
                return transport_failure(error), ""
            reason = _reason(response)
            if response.status_code == 403 and reason == "ExpiredProviderToken":
                token = self.provider_token(stale=token)
                continue
            return classify(response, reason), reason
        return Outcome(RETRY, "ExpiredProviderToken twice"), "ExpiredProviderToken"


def _reason(response: httpx.Response) -> str:
    """The `reason` of an error response ("" on success or an unreadable body)."""
    if response.status_code == 200:
        return ""
    try:
        return str(response.json().get("reason", ""))
    except ValueError:
        return ""


def classify(response: httpx.Response, reason: str) -> Outcome:
    """Apple's "Handling notification responses": 200 sent; 410 the token is no longer active;
    429 and 5xx later; any other 4xx names our mistake, which a retry would repeat."""
    status = response.status_code
    detail = f"HTTP {status} {reason}".strip()
    if status == 200:
        return Outcome(ACCEPTED, detail)
    if status == 410:  # Unregistered or ExpiredToken
        return Outcome(GONE, detail)
    if status == 429 or status >= 500:
        return Outcome(RETRY, detail, retry_after=retry_after(response))
    return Outcome(FAILED, detail)


def load_key(path: str) -> ec.EllipticCurvePrivateKey:
    """The .p8 signing key from Apple (PEM, P-256), or RuntimeError at start-up."""
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError) as error:
        raise RuntimeError(f"COUNTS_APNS_KEY_FILE {path!r} is not a readable PEM key: {error}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise RuntimeError("COUNTS_APNS_KEY_FILE must hold a P-256 EC key (Apple's .p8)")
    return key


def from_settings(own: ApnsSettings, push: PushSettings) -> APNs:
    """The APNs provider from COUNTS_APNS_*."""
    assert own.key_file and own.key_id and own.team_id
    return APNs(load_key(own.key_file), own.key_id, own.team_id,
                {"production": own.host, "sandbox": own.sandbox_host},
                http_client(push, http2=True))
