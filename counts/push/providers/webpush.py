"""Web Push (RFC 8030), payloads encrypted with aes128gcm (RFC 8291), signed with VAPID (RFC 8292).

http-ece encrypts and py-vapid signs; httpx sends. Not pywebpush: its `ttl` defaults to 0 (a push
dropped unless the browser is online that instant), it writes `aud` and `exp` into the claims
dict it is given (a dict reused for a second push service carries the first one's audience), and
it signs every request afresh. Measured here: encryption ~75 us a push, a VAPID signature ~29 us;
a signature is valid for hours, so one per push service origin is cached and reused.
"""

import json
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import http_ece
import httpx
from cryptography.hazmat.primitives.asymmetric import ec
from marshmallow import Schema, ValidationError, fields, validate
from py_vapid import Vapid

from counts.errors import InvalidInput
from counts.push import vapid as vapid_keys
from counts.push.devices import Device
from counts.push.payload import COLLAPSE_KEY, Push
from counts.push.providers import (
    ACCEPTED,
    FAILED,
    GONE,
    RETRY,
    WITHHELD,
    Outcome,
    http_client,
    retry_after,
    transport_failure,
)
from counts.settings import PushSettings, SettingsError
from counts.settings.parse import setting, text, words

# The browsers' push services (Chrome, Firefox, Edge, Safari): a Web Push subscription must point
# at one of them, or the dispatcher would POST wherever a client asked it to.
DEFAULT_HOSTS = ("fcm.googleapis.com", "android.googleapis.com",
                 "updates.push.services.mozilla.com", "*.notify.windows.com", "web.push.apple.com")
# Safari's: a push must show a notification, or after three the subscription is revoked. The
# others (Chrome, Firefox, Edge) get badge-only pushes too, and the service worker shows a quiet
# notification for each (clients/js service-worker: Chrome shows its own notice otherwise).
ALERTS_ONLY_HOSTS = ("web.push.apple.com",)


@dataclass(frozen=True)
class WebPushSettings:
    """Web Push (browsers): the VAPID key that signs pushes, and where subscriptions may point."""

    private_key: str | None = setting(
        "COUNTS_VAPID_PRIVATE_KEY", None, "The VAPID private key (base64url or PEM, P-256); set, it "
        "turns Web Push on (`python -m counts.push.vapid` makes one).", text)
    subject: str | None = setting("COUNTS_VAPID_SUBJECT", None, "A mailto: or https: contact for "
                                  "the push services; required with the key.", text)
    allowed_hosts: tuple[str, ...] = setting(
        "COUNTS_WEBPUSH_ALLOWED_HOSTS", DEFAULT_HOSTS, "Hosts a subscription's endpoint may be on: "
        "host or *.domain, with :port (default 443), comma-separated; the default is the "
        "browsers' push services.", words)
    alerts_only_hosts: tuple[str, ...] = setting(
        "COUNTS_WEBPUSH_ALERTS_ONLY_HOSTS", ALERTS_ONLY_HOSTS, "Push services (as above) that "
        "get alerts only, never a badge-only push: Safari revokes a subscription after three "
        "pushes that show no notification.", words)

    def __post_init__(self) -> None:
        if self.private_key and not (self.subject or "").startswith(("mailto:", "https:")):
            raise SettingsError("COUNTS_VAPID_SUBJECT must be a mailto: or https: URI when "
                                f"COUNTS_VAPID_PRIVATE_KEY is set, got {self.subject!r}")
        try:
            HostRules(self.allowed_hosts)
        except ValueError as error:
            raise SettingsError(f"COUNTS_WEBPUSH_ALLOWED_HOSTS: {error}") from None
        try:
            HostRules(self.alerts_only_hosts)
        except ValueError as error:
            raise SettingsError(f"COUNTS_WEBPUSH_ALERTS_ONLY_HOSTS: {error}") from None

    @property
    def configured(self) -> bool:
        """Whether this service pushes to browsers."""
        return self.private_key is not None


# --- where subscriptions may point, and what a registration carries ------------------------------

# A Web Push allowlist entry: a host name or *.domain, with an optional port.
_HOST_RULE = re.compile(r"(\*\.)?[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?(?::([0-9]{1,5}))?")


class HostRules:
    """COUNTS_WEBPUSH_ALLOWED_HOSTS: `host` or `*.domain`, either with `:port` (default 443)."""

    def __init__(self, patterns: Iterable[str]):
        self.rules: list[tuple[str, int]] = []
        for pattern in patterns:
            found = _HOST_RULE.fullmatch(pattern.lower())
            if found is None or not 0 < int(found.group(2) or 443) <= 65535:
                raise ValueError(f"{pattern!r} is not host[:port] or *.domain[:port]")
            host, colon, port = pattern.lower().rpartition(":")
            self.rules.append((host, int(port)) if colon else (pattern.lower(), 443))

    def allows(self, endpoint: str) -> bool:
        """An https URL, without credentials, on an allowed host and port."""
        try:
            parts = urlsplit(endpoint)
            port = parts.port or 443
        except ValueError:
            return False
        host = (parts.hostname or "").rstrip(".")
        if parts.scheme != "https" or parts.username or parts.password or not host:
            return False
        return any(port == allowed_port and _host_matches(host, allowed)
                   for allowed, allowed_port in self.rules)


def _host_matches(host: str, allowed: str) -> bool:
    """`allowed` is the host itself, or `*.domain` for any host under that domain."""
    if allowed.startswith("*."):
        return host.endswith(allowed[1:]) and len(host) > len(allowed) - 1
    return host == allowed


def _b64url_bytes(length: int, what: str) -> Any:
    """A validator: base64url (padding optional) of exactly `length` bytes."""
    def check(value: str) -> None:
        try:
            raw = vapid_keys.b64url_decode(value)
        except ValueError:
            raise ValidationError(f"Must be the base64url {what}.") from None
        if len(raw) != length:
            raise ValidationError(f"Must be the base64url {what} ({length} bytes).")
    return check


def _p256_point(value: str) -> None:
    """The browser's P-256 public key: an uncompressed point on the curve, base64url."""
    _b64url_bytes(65, "P-256 public key")(value)
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), vapid_keys.b64url_decode(value))
    except ValueError:
        raise ValidationError("Must be a point on the P-256 curve.") from None


class SubscriptionKeys(Schema):
    p256dh = fields.String(required=True, validate=_p256_point)
    auth = fields.String(required=True, validate=_b64url_bytes(16, "auth secret"))


class Subscription(Schema):
    """A browser's PushSubscription, as PushSubscription.toJSON() gives it."""

    endpoint = fields.String(required=True, validate=[validate.Length(min=9, max=2048),
                                                      validate.URL(schemes={"https"}, require_tld=False)])
    expirationTime = fields.Integer(load_default=None, allow_none=True)  # noqa: N815 - the browser's name
    keys = fields.Nested(SubscriptionKeys, required=True)


class WebPushDevice(Schema):
    """`POST /v1/users/{id}/devices` for a browser."""

    platform = fields.String(required=True, validate=validate.Equal("webpush"))
    subscription = fields.Nested(Subscription, required=True)


class OldSubscription(Schema):
    """What proves a service worker's claim to a subscription: its endpoint and auth secret."""

    endpoint = fields.String(required=True, validate=validate.Length(min=9, max=2048))
    auth = fields.String(required=True, validate=_b64url_bytes(16, "auth secret"))


class Resubscription(Schema):
    """`POST /v1/push/webpush/resubscribe`: pushsubscriptionchange's old and new subscriptions."""

    old = fields.Nested(OldSubscription, required=True)
    subscription = fields.Nested(Subscription, required=True)


def accept(body: dict, own: WebPushSettings) -> tuple[str, dict]:
    """The (token, settings) to store for a valid registration, or 422 where we won't push."""
    subscription = body["subscription"]
    if not HostRules(own.allowed_hosts).allows(subscription["endpoint"]):
        raise InvalidInput("The subscription's endpoint must be https on a push service this "
                           "service allows (COUNTS_WEBPUSH_ALLOWED_HOSTS).")
    return subscription["endpoint"], dict(subscription["keys"])


def shown(token: str, settings: dict) -> dict:
    """What the device list shows of a browser, besides its token's hint."""
    return {"endpoint_host": urlsplit(token).hostname}


PLATFORM = "webpush"
SETTINGS = WebPushSettings
REGISTRATION = WebPushDevice

# RFC 8292: a push service rejects a token whose exp is more than 24 h away. Signed for 12 h,
# renewed when less than 1 h is left.
VAPID_LIFETIME = 12 * 3600
VAPID_RENEW_BEFORE = 3600


def encrypt(plaintext: bytes, p256dh: str, auth: str) -> bytes:
    """The aes128gcm body for one subscription: a fresh ephemeral key and salt every time."""
    return http_ece.encrypt(plaintext, private_key=ec.generate_private_key(ec.SECP256R1()),
                            dh=vapid_keys.b64url_decode(p256dh),
                            auth_secret=vapid_keys.b64url_decode(auth), version="aes128gcm")


def origin(endpoint: str) -> str:
    """The push service's origin: the `aud` of the VAPID token (RFC 8292 section 2)."""
    parts = urlsplit(endpoint)
    return f"{parts.scheme}://{parts.netloc}"


class WebPush:
    """Pushes to browsers' push services."""

    name = "webpush"

    def __init__(self, vapid: Vapid, subject: str, hosts: HostRules, client: httpx.Client,
                 alerts_only: HostRules | None = None):
        self.vapid, self.subject, self.hosts, self.client = vapid, subject, hosts, client
        self.alerts_only = alerts_only or HostRules(())
        self._tokens: dict[str, tuple[str, float]] = {}  # origin -> (Authorization, expires)
        self._lock = threading.Lock()

    def destination(self, device: Device) -> str:
        """The push service's host."""
        return urlsplit(device.token).netloc

    def authorization(self, audience: str) -> str:
        """`vapid t=<JWT>, k=<public key>` for a push service, signed once per origin and reused."""
        now = time.time()
        with self._lock:
            cached = self._tokens.get(audience)
            if cached is None or cached[1] - now < VAPID_RENEW_BEFORE:
                expires = int(now) + VAPID_LIFETIME
                # A fresh claims dict each time: signing must not share one between audiences.
                claims = {"aud": audience, "exp": expires, "sub": self.subject}
                cached = self._tokens[audience] = (self.vapid.sign(claims)["Authorization"], expires)
        return cached[0]

    def close(self) -> None:
        """Close the kept-open connections."""
        self.client.close()

    def send(self, device: Device, push: Push) -> Outcome:
        """POST the encrypted payload to the subscription's endpoint."""
        endpoint = device.token
        if not self.hosts.allows(endpoint):  # the allowlist may have narrowed since it registered
            return Outcome(FAILED, "endpoint host no longer allowed")
        if not push.alert and self.alerts_only.allows(endpoint):
            return Outcome(WITHHELD, "badge-only push to an alerts-only push service")
        body = encrypt(json.dumps(push.body()).encode(), device.settings["p256dh"],
                       device.settings["auth"])
        headers = {
            "Authorization": self.authorization(origin(endpoint)),
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
            "TTL": str(push.ttl()),  # always: a missing TTL means 0, dropped if the browser is offline
            "Urgency": "normal" if push.alert else "low",
            "Topic": COLLAPSE_KEY,  # replaces an undelivered older push on this subscription
        }
        try:
            response = self.client.post(endpoint, content=body, headers=headers)
        except httpx.HTTPError as error:
            return transport_failure(error)
        return classify(response)


def classify(response: httpx.Response) -> Outcome:
    """RFC 8030: 201 accepted; 404 and 410 the subscription is gone; 429 and 5xx later."""
    status = response.status_code
    detail = f"HTTP {status}"
    if status in (200, 201, 202):
        return Outcome(ACCEPTED, detail)
    if status in (404, 410):
        return Outcome(GONE, detail)
    if status == 429 or status >= 500:
        return Outcome(RETRY, detail, retry_after=retry_after(response))
    # 400 (headers), 401/403 (VAPID: a rotated key is a configuration error, not a gone device),
    # 413 (too large): retrying the same push changes nothing.
    return Outcome(FAILED, f"{detail}: {response.text[:200]}")


def from_settings(own: WebPushSettings, push: PushSettings) -> WebPush:
    """The Web Push provider from COUNTS_VAPID_* and COUNTS_WEBPUSH_ALLOWED_HOSTS."""
    assert own.private_key is not None and own.subject is not None
    return WebPush(vapid_keys.load_private_key(own.private_key), own.subject,
                   HostRules(own.allowed_hosts), http_client(push),
                   HostRules(own.alerts_only_hosts))
