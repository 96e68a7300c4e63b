"""Google's OAuth2 token endpoint and FCM's HTTP v1 send endpoint, for tests only.

What it enforces, from Google's service-account OAuth2 flow and FCM's "REST Resource:
projects.messages" and "ErrorCode" pages:
- POST /token takes grant_type urn:ietf:params:oauth:grant-type:jwt-bearer and an `assertion`: an
  RS256 JWT signed with the service account's key, iss = its client_email, aud =
  https://oauth2.googleapis.com/token (Google: "always", whatever URL the request goes to), a
  `scope` including firebase.messaging, lasting at most an hour; it answers an access token that
  lasts an hour, else 400 invalid_grant.
- POST /v1/projects/<project>/messages:send needs `Authorization: Bearer <that token>` (401
  UNAUTHENTICATED) for that project (403 PERMISSION_DENIED); `message.token` is required; `data`
  maps strings to strings (400 INVALID_ARGUMENT with a google.rpc.BadRequest field violation),
  with no reserved key (from, notification, message_type, google*, gcm*) and at most 4096 bytes
  of keys and values; `android.priority` NORMAL or HIGH; `android.ttl` seconds ending in "s", at
  most four weeks.
- An unknown token is 400 INVALID_ARGUMENT; an unregistered one 404 NOT_FOUND with FcmError
  UNREGISTERED; one of another sender 403 PERMISSION_DENIED with SENDER_ID_MISMATCH.
- Success is 200 {"name": "projects/<project>/messages/<id>"}.
"""

import json
import re
import secrets
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import jwt

from tests.support.pushfakes.server import Trouble, read_body, respond

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
ASSERTION_AUDIENCE = "https://oauth2.googleapis.com/token"
RESERVED = re.compile(r"^(from|notification|message_type|google.*|gcm.*)$")
TTL = re.compile(r"^\d+(\.\d{1,9})?s$")
FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"


@dataclass
class Sent:
    """One message FCM accepted."""

    token: str
    message: dict
    at: float = field(default_factory=time.time)


def error_body(code: int, status: str, message: str, fcm_code: str | None = None,
               field_name: str | None = None) -> bytes:
    """FCM's error JSON."""
    details = []
    if fcm_code:
        details.append({"@type": FCM_ERROR, "errorCode": fcm_code})
    if field_name:
        details.append({"@type": "type.googleapis.com/google.rpc.BadRequest",
                        "fieldViolations": [{"field": field_name, "description": message}]})
    return json.dumps({"error": {"code": code, "message": message, "status": status,
                                 "details": details}}).encode()


class FcmService:
    """Google, as far as FCM needs it (an ASGI app)."""

    def __init__(self, project_id: str, client_email: str, public_key):
        self.project_id, self.client_email, self.public_key = project_id, client_email, public_key
        self.token_uri = ""  # set by the test once the server's port is known
        self.access_tokens: dict[str, float] = {}  # token -> expiry
        self.tokens_issued = 0
        self.registered: set[str] = set()
        self.unregistered: set[str] = set()
        self.other_sender: set[str] = set()
        self.sent: list[Sent] = []
        self.errors: list[tuple[int, str]] = []
        self.trouble = Trouble()

    def device(self) -> str:
        """A registration token an app was given."""
        token = secrets.token_urlsafe(24) + ":APA91b" + secrets.token_urlsafe(60)
        self.registered.add(token)
        return token

    def expire_access_tokens(self) -> None:
        """Revoke every access token issued so far (as if they had expired early)."""
        self.access_tokens.clear()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        headers = {name.decode().lower(): value.decode() for name, value in scope["headers"]}
        if scope["path"] == "/token":
            status, answer = self.grant(body)
        else:
            if await self.trouble.intervene(send):
                return
            status, answer = self.send(scope, headers, body)
        if status != 200:
            self.errors.append((status, answer.decode()[:200]))
        await respond(send, status, answer, [(b"content-type", b"application/json")])

    def grant(self, body: bytes) -> tuple[int, bytes]:
        """The OAuth2 JWT-bearer grant (RFC 7523) Google's token endpoint implements."""
        form = {key: values[0] for key, values in parse_qs(body.decode()).items()}
        refused = (400, json.dumps({"error": "invalid_grant", "error_description": "bad assertion"}).encode())
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return refused
        try:
            claims = jwt.decode(form.get("assertion", ""), self.public_key, algorithms=["RS256"],
                                audience=ASSERTION_AUDIENCE,
                                options={"require": ["iss", "aud", "iat", "exp"]})
        except jwt.InvalidTokenError:
            return refused
        if (claims["iss"] != self.client_email or SCOPE not in claims.get("scope", "").split()
                or claims["exp"] - claims["iat"] > 3600):
            return refused
        token = "ya29." + secrets.token_urlsafe(32)
        self.access_tokens[token] = time.time() + 3600
        self.tokens_issued += 1
        return 200, json.dumps({"access_token": token, "expires_in": 3600, "token_type": "Bearer"}).encode()

    def send(self, scope, headers: dict, body: bytes) -> tuple[int, bytes]:
        """messages:send, with FCM's rules and errors (see the module docstring)."""
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme != "Bearer" or self.access_tokens.get(token, 0) < time.time():
            return 401, error_body(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
        if scope["method"] != "POST" or scope["path"] != f"/v1/projects/{self.project_id}/messages:send":
            return 403, error_body(403, "PERMISSION_DENIED", "Permission denied for this project.")
        try:
            message = json.loads(body)["message"]
            target = message["token"]
        except (ValueError, KeyError, TypeError):
            return 400, error_body(400, "INVALID_ARGUMENT", "message.token is required", "INVALID_ARGUMENT")
        invalid = self.check_message(message)
        if invalid:
            return 400, error_body(400, "INVALID_ARGUMENT", invalid[1], "INVALID_ARGUMENT", invalid[0])
        if target in self.other_sender:
            return 403, error_body(403, "PERMISSION_DENIED", "SenderId mismatch", "SENDER_ID_MISMATCH")
        if target in self.unregistered:
            return 404, error_body(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED")
        if target not in self.registered:
            return 400, error_body(400, "INVALID_ARGUMENT",
                                   "The registration token is not a valid FCM registration token",
                                   "INVALID_ARGUMENT")
        self.sent.append(Sent(target, message))
        name = f"projects/{self.project_id}/messages/{secrets.token_hex(8)}"
        return 200, json.dumps({"name": name}).encode()

    @staticmethod
    def check_message(message: dict) -> tuple[str, str] | None:
        """(field, why) of the first rule the message breaks, or None."""
        data = message.get("data", {})
        if not isinstance(data, dict):
            return "message.data", "data must be a map"
        for index, (key, value) in enumerate(data.items()):
            if not isinstance(value, str):
                where = f"message.data[{index}].value"
                return where, f"Invalid value at '{where}' (TYPE_STRING)"
            if RESERVED.match(key):
                return f"message.data[{index}].key", f"Invalid data key {key!r}"
        if sum(len(k.encode()) + len(v.encode()) for k, v in data.items()) > 4096:
            return "message.data", "Message too big"
        android = message.get("android", {})
        if android.get("priority", "NORMAL") not in ("NORMAL", "HIGH"):
            return "message.android.priority", "Invalid priority"
        ttl = android.get("ttl", "0s")
        if not TTL.fullmatch(ttl) or float(ttl[:-1]) > 2419200:
            return "message.android.ttl", "Invalid TTL"
        if not isinstance(android.get("collapse_key", ""), str):
            return "message.android.collapse_key", "Invalid collapse_key"
        return None
