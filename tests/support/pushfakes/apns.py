"""Apple's provider API (APNs), for tests only: two servers, production and sandbox, one world.

What it enforces, from Apple's "Sending notification requests to APNs" and "Handling notification
responses from APNs":
- HTTP/2 only (the servers offer only h2 by ALPN; anything else is refused).
- POST only (405 MethodNotAllowed); the path is /3/device/<token> (404 BadPath).
- Token authentication: `authorization: bearer <JWT>` (403 MissingProviderToken), an ES256 JWT
  whose header names the key (`kid`) and whose claims carry the team (`iss`) and `iat`, signed by
  that key (403 InvalidProviderToken); older than an hour is 403 ExpiredProviderToken; a new token
  less than 20 minutes after the previous one is 429 TooManyProviderTokenUpdates.
- `apns-topic` is required (400 MissingTopic) and must be the token's app (400
  DeviceTokenNotForTopic); `apns-push-type` one of Apple's types (400 InvalidPushType);
  `apns-priority` 10, 5 or 1 (400 BadPriority); `apns-expiration` an integer (400
  BadExpirationDate); `apns-collapse-id` at most 64 bytes (400 BadCollapseId); `apns-id`, when
  sent, a canonical UUID (400 BadMessageId).
- The payload is not empty (400 PayloadEmpty) and at most 4096 bytes (413 PayloadTooLarge).
- A token of the other environment, or no known token, is 400 BadDeviceToken; an unregistered
  one is 410 with reason Unregistered and the `timestamp` (ms) since when it was.
- Success is 200 with an `apns-id`; errors carry {"reason"} (and "timestamp" for 410).
"""

import json
import re
import time
import uuid
from dataclasses import dataclass, field

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.pushfakes.server import Trouble, read_body, respond

PUSH_TYPES = {"alert", "background", "location", "voip", "complication", "fileprovider", "mdm",
              "liveactivity", "pushtotalk"}
UUID_TEXT = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
MAX_PAYLOAD = 4096


@dataclass
class Delivered:
    """One notification APNs accepted."""

    environment: str
    token: str
    headers: dict[str, str]
    payload: dict
    connection: tuple  # the client's (host, port): the same for pushes on one kept-open connection
    http_version: str
    at: float = field(default_factory=time.time)


class ApnsWorld:
    """What Apple knows: the team's signing key, the tokens of each environment, what arrived."""

    def __init__(self, team_id: str, key_id: str, public_key: ec.EllipticCurvePublicKey):
        self.team_id, self.key_id, self.public_key = team_id, key_id, public_key
        self.tokens: dict[str, tuple[str, str]] = {}  # token -> (environment, topic)
        self.unregistered: dict[str, int] = {}  # token -> since (ms)
        self.delivered: list[Delivered] = []
        self.errors: list[tuple[int, str]] = []
        self.token_iats: list[int] = []  # distinct provider tokens seen, by iat
        self.trouble = Trouble()

    def device(self, environment: str, topic: str) -> str:
        """A token an app on a device of this environment was given."""
        token = uuid.uuid4().hex + uuid.uuid4().hex
        self.tokens[token] = (environment, topic)
        return token

    def unregister(self, token: str) -> None:
        """The app was uninstalled: its token is no longer active for the topic."""
        self.unregistered[token] = int(time.time() * 1000)

    def server(self, environment: str) -> "ApnsServer":
        return ApnsServer(self, environment)


class ApnsServer:
    """One of Apple's hosts (an ASGI app)."""

    def __init__(self, world: ApnsWorld, environment: str):
        self.world, self.environment = world, environment

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        if await self.world.trouble.intervene(send):
            return
        headers = {name.decode().lower(): value.decode() for name, value in scope["headers"]}
        status, reason = self.check(scope, headers, body)
        if status == 200:
            self.world.delivered.append(Delivered(
                self.environment, scope["path"].rsplit("/", 1)[-1], headers, json.loads(body),
                tuple(scope["client"]), scope["http_version"]))
            apns_id = headers.get("apns-id") or str(uuid.uuid4())
            await respond(send, 200, b"", [(b"apns-id", apns_id.encode())])
            return
        self.world.errors.append((status, reason))
        error = {"reason": reason}
        if status == 410:
            error["timestamp"] = self.world.unregistered[scope["path"].rsplit("/", 1)[-1]]
        await respond(send, status, json.dumps(error).encode(), [(b"content-type", b"application/json")])

    def check(self, scope, headers: dict, body: bytes) -> tuple[int, str]:
        """Apple's rules, in the order listed in the module docstring: (status, reason)."""
        if scope["http_version"] != "2":
            return 400, "HTTP2Required"
        if scope["method"] != "POST":
            return 405, "MethodNotAllowed"
        match = re.fullmatch(r"/3/device/([0-9a-fA-F]+)", scope["path"])
        if match is None:
            return 404, "BadPath"
        status, reason = self.check_token(headers.get("authorization", ""))
        if status:
            return status, reason
        for check in (self.check_headers, self.check_payload):
            status, reason = check(headers, body)
            if status:
                return status, reason
        token = match.group(1).lower()
        known = self.world.tokens.get(token)
        if known is None or known[0] != self.environment:
            return 400, "BadDeviceToken"
        if headers["apns-topic"] != known[1]:
            return 400, "DeviceTokenNotForTopic"
        if token in self.world.unregistered:
            return 410, "Unregistered"
        return 200, ""

    def check_token(self, authorization: str) -> tuple[int, str]:
        """Token-based authentication (see the module docstring)."""
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return 403, "MissingProviderToken"
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, self.world.public_key, algorithms=["ES256"],
                                options={"require": ["iss", "iat"], "verify_iat": False})
        except jwt.InvalidTokenError:
            return 403, "InvalidProviderToken"
        if header.get("kid") != self.world.key_id or claims["iss"] != self.world.team_id:
            return 403, "InvalidProviderToken"
        iat = int(claims["iat"])
        if iat > time.time() + 60:
            return 403, "InvalidProviderToken"
        if time.time() - iat > 3600:
            return 403, "ExpiredProviderToken"
        if iat not in self.world.token_iats:
            if self.world.token_iats and iat - max(self.world.token_iats) < 20 * 60:
                return 429, "TooManyProviderTokenUpdates"
            self.world.token_iats.append(iat)
        return 0, ""

    @staticmethod
    def check_headers(headers: dict, body: bytes) -> tuple[int, str]:
        """The apns-* request headers."""
        if not headers.get("apns-topic"):
            return 400, "MissingTopic"
        if headers.get("apns-push-type", "alert") not in PUSH_TYPES:
            return 400, "InvalidPushType"
        if headers.get("apns-priority", "10") not in ("10", "5", "1"):
            return 400, "BadPriority"
        if not headers.get("apns-expiration", "0").isdigit():
            return 400, "BadExpirationDate"
        if len(headers.get("apns-collapse-id", "").encode()) > 64:
            return 400, "BadCollapseId"
        if "apns-id" in headers and not UUID_TEXT.fullmatch(headers["apns-id"]):
            return 400, "BadMessageId"
        return 0, ""

    @staticmethod
    def check_payload(headers: dict, body: bytes) -> tuple[int, str]:
        """Not empty, at most 4 KB."""
        if not body:
            return 400, "PayloadEmpty"
        if len(body) > MAX_PAYLOAD:
            return 413, "PayloadTooLarge"
        return 0, ""
