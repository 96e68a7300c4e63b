"""A Web Push service, and the test as the browser subscribed to it. Test code only.

`PushService` enforces what RFC 8030, RFC 8291 and RFC 8292 ask of an application server:
- POST to the subscription's URL; an unknown or unsubscribed one is 410 Gone (RFC 8030 5.2.1 allows
  404 too; `gone(..., status=404)` answers that).
- `TTL` is required and a non-negative integer (RFC 8030 5.2), else 400.
- `Urgency`, when sent, is very-low, low, normal or high (RFC 8030 5.3), else 400.
- `Topic`, when sent, is at most 32 characters of the URL-safe base64 alphabet (RFC 8030 5.4), else 400;
  a message with a topic replaces an undelivered one with the same topic (see `pending`).
- `Content-Encoding: aes128gcm` (RFC 8291 4), else 400; a body over 4096 octets is 413 (RFC 8030 7.2).
- `Authorization: vapid t=<JWT>, k=<key>` (RFC 8292 3): k must be the applicationServerKey the
  subscription was made with, else 403 (4.2); the JWT must verify as ES256 with it, its `aud`
  be this service's origin, its `exp` in the future and no more than 24 hours away, and it must
  carry a `sub`, else 401 (4.1).
- Accepted messages get 201 Created with a Location.

`Subscriber` makes the key pair and auth secret a browser makes, and decrypts what arrived with
its private key, following RFC 8291 3.4 with `cryptography`'s primitives (not http-ece, which
the service encrypts with: a test using one library on both ends would prove only that it agrees
with itself).
"""

import base64
import json
import os
import re
import secrets
import time
from dataclasses import dataclass, field

import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tests.support.pushfakes.server import Trouble, read_body, respond

TOPIC = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
URGENCIES = {"very-low", "low", "normal", "high"}
MAX_PAYLOAD = 4096


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Received:
    """One accepted push message."""

    subscription: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.time)


class PushService:
    """An RFC 8030 push service for the tests (an ASGI app; serve it with FakeServer)."""

    def __init__(self):
        self.origin = ""  # set by the test once the server's port is known
        self.keys: dict[str, str] = {}  # subscription id -> applicationServerKey
        self.gone_status: dict[str, int] = {}
        self.received: list[Received] = []
        self.rejected: list[tuple[int, str]] = []  # (status, why) of refused requests
        self.trouble = Trouble()
        self.on_receive = None  # called with each accepted Received (the benchmark times it)

    def subscribe(self, application_server_key: str) -> str:
        """A new subscription made with this key; its id (the last segment of its endpoint)."""
        subscription = secrets.token_urlsafe(24)
        self.keys[subscription] = application_server_key
        return subscription

    def gone(self, subscription: str, status: int = 410) -> None:
        """The browser unsubscribed: every push to it is now 410 (or 404)."""
        self.gone_status[subscription] = status

    def for_subscription(self, subscription: str) -> list[Received]:
        return [message for message in self.received if message.subscription == subscription]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        if await self.trouble.intervene(send):
            return
        headers = {name.decode().lower(): value.decode() for name, value in scope["headers"]}
        subscription = scope["path"].rsplit("/", 1)[-1]
        status, why = self.check(scope["method"], subscription, headers, body)
        if status != 201:
            self.rejected.append((status, why))
            await respond(send, status, json.dumps({"error": why}).encode(),
                          [(b"content-type", b"application/json")])
            return
        message = Received(subscription, headers, body)
        self.received.append(message)
        if self.on_receive is not None:
            self.on_receive(message)
        await self.trouble.answer_when_released()
        await respond(send, 201, b"", [(b"location", f"/message/{secrets.token_hex(8)}".encode()),
                                       (b"ttl", headers["ttl"].encode())])

    def check(self, method: str, subscription: str, headers: dict, body: bytes) -> tuple[int, str]:
        """RFC 8030/8291/8292 as listed in the module docstring: (status, why)."""
        if method != "POST":
            return 405, "POST only"
        if subscription in self.gone_status or subscription not in self.keys:
            return self.gone_status.get(subscription, 410), "no such subscription"
        ttl = headers.get("ttl", "")
        if not ttl.isdigit():
            return 400, "TTL header missing or not a non-negative integer"
        if "urgency" in headers and headers["urgency"] not in URGENCIES:
            return 400, "bad Urgency"
        if "topic" in headers and not TOPIC.fullmatch(headers["topic"]):
            return 400, "bad Topic"
        if headers.get("content-encoding") != "aes128gcm":
            return 400, "Content-Encoding must be aes128gcm"
        if len(body) > MAX_PAYLOAD:
            return 413, "payload too large"
        return self.check_vapid(subscription, headers.get("authorization", ""))

    def check_vapid(self, subscription: str, authorization: str) -> tuple[int, str]:
        """RFC 8292: the key matches the subscription's, and the token verifies and is current."""
        match = re.fullmatch(r"vapid t=([^,\s]+),\s*k=([^,\s]+)", authorization)
        if match is None:
            return 401, "no vapid Authorization"
        token, key = match.groups()
        if key != self.keys[subscription]:
            return 403, "not the key the subscription was made with"
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(key))
        try:
            claims = jwt.decode(token, public, algorithms=["ES256"], audience=self.origin,
                                options={"require": ["exp", "aud", "sub"]})
        except jwt.InvalidTokenError as error:
            return 401, f"VAPID token: {error}"
        if claims["exp"] > time.time() + 24 * 3600:
            return 401, "VAPID token expires more than 24 h from now"
        return 201, ""


class Subscriber:
    """The test as a browser: its subscription, and the plaintexts of the pushes it received."""

    def __init__(self, service: PushService, base_url: str, application_server_key: str):
        self.service = service
        self.private_key = ec.generate_private_key(ec.SECP256R1())
        self.public_key = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        self.auth_secret = os.urandom(16)
        self.id = service.subscribe(application_server_key)
        self.endpoint = f"{base_url}/push/v2/{self.id}"

    def subscription(self) -> dict:
        """What PushSubscription.toJSON() gives a page."""
        return {"endpoint": self.endpoint, "expirationTime": None,
                "keys": {"p256dh": b64url(self.public_key), "auth": b64url(self.auth_secret)}}

    def received(self) -> list[Received]:
        return self.service.for_subscription(self.id)

    def messages(self) -> list[dict]:
        """Every push received, decrypted and parsed, oldest first."""
        return [json.loads(self.decrypt(message.body)) for message in self.received()]

    def decrypt(self, body: bytes) -> bytes:
        """RFC 8291 3.4 and RFC 8188 2: one aes128gcm record, keyed by ECDH and the auth secret."""
        salt, record_size, id_length = body[:16], int.from_bytes(body[16:20], "big"), body[20]
        sender_key = body[21:21 + id_length]
        ciphertext = body[21 + id_length:]
        assert id_length == 65 and record_size >= 18 and len(ciphertext) <= record_size
        sender = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), sender_key)
        shared = self.private_key.exchange(ec.ECDH(), sender)
        key_info = b"WebPush: info\x00" + self.public_key + sender_key
        ikm = HKDF(hashes.SHA256(), 32, self.auth_secret, key_info).derive(shared)
        cek = HKDF(hashes.SHA256(), 16, salt, b"Content-Encoding: aes128gcm\x00").derive(ikm)
        nonce = HKDF(hashes.SHA256(), 12, salt, b"Content-Encoding: nonce\x00").derive(ikm)
        padded = AESGCM(cek).decrypt(nonce, ciphertext, None)
        unpadded = padded.rstrip(b"\x00")
        assert unpadded.endswith(b"\x02"), "the last record's delimiter is 2"
        return unpadded[:-1]
