"""Expo's push service (send, getReceipts), for tests and the push benchmark only.

What it enforces, from Expo's "Sending notifications with Expo's push API" page and
expo-server-sdk-node (src/ExpoClient.ts):
- POST /--/api/v2/push/send takes one message or an array of at most 100 (400
  PUSH_TOO_MANY_NOTIFICATIONS), JSON, gzipped or not (Content-Encoding: gzip); each `to` an Expo
  push token, ExponentPushToken[...] or ExpoPushToken[...] (400 VALIDATION_ERROR otherwise);
  `priority` default, normal or high; `ttl` and `badge` non-negative integers; `data` an object.
- With push security on, `Authorization: Bearer <the access token>` (401 UNAUTHORIZED).
- At most 600 notifications a second for the project (429 TOO_MANY_REQUESTS).
- The answer is {"data": [ticket...]} in message order: {"status": "ok", "id"} or {"status":
  "error", "message", "details": {"error": "DeviceNotRegistered" | "MessageTooBig"...}}; data over
  4096 bytes is MessageTooBig, a token no app holds DeviceNotRegistered.
- POST /--/api/v2/push/getReceipts {"ids": [...]}, at most 1000 (400 PUSH_TOO_MANY_RECEIPTS),
  answers {"data": {id: receipt}} with only the receipts that exist: a receipt appears some time
  after the send (`receipt_after`) and is gone 24 hours after it (`receipt_kept`).
"""

import gzip
import json
import re
import secrets
import time
import uuid
from collections import deque
from dataclasses import dataclass, field

from tests.support.pushfakes.server import Trouble, read_body, respond

TOKEN = re.compile(r"^Expo(?:nent)?PushToken\[[^\[\]\s]+\]$")
RATE = 600  # notifications a second per project


@dataclass
class Sent:
    """One message Expo accepted."""

    token: str
    message: dict
    ticket: str
    at: float = field(default_factory=time.time)


@dataclass
class Request:
    """One send or getReceipts request as it arrived."""

    path: str
    items: int
    gzipped: bool
    size: int
    authorization: str | None


class ExpoService:
    """Expo's push service (an ASGI app)."""

    def __init__(self, access_token: str | None = None):
        self.access_token = access_token  # set: push security is on
        self.registered: set[str] = set()
        self.receipt_errors: dict[str, str] = {}  # token -> the error its receipts will carry
        self.receipt_after = 0.0  # seconds after a send before its receipt exists
        self.receipt_kept = 24 * 3600.0  # seconds after a send its receipt is kept
        self.sent: list[Sent] = []
        self.receipts: dict[str, tuple[float, dict]] = {}  # ticket id -> (sent at, receipt)
        self.receipts_asked: list[str] = []
        self.requests: list[Request] = []
        self.errors: list[tuple[int, str]] = []
        self.trouble = Trouble()
        self.clock = time.monotonic  # the rate's clock (a test may stop it)
        self._window: deque[tuple[float, int]] = deque()  # (at, notifications) of the last second

    def device(self) -> str:
        """A token an app's getExpoPushTokenAsync gave."""
        token = f"ExponentPushToken[{secrets.token_urlsafe(16)}]"
        self.registered.add(token)
        return token

    def messages_to(self, token: str) -> list[dict]:
        """The messages accepted for one token."""
        return [sent.message for sent in self.sent if sent.token == token]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        raw = await read_body(receive)
        headers = {name.decode().lower(): value.decode() for name, value in scope["headers"]}
        if await self.trouble.intervene(send):
            return
        status, answer = self.handle(scope, headers, raw)
        if status != 200:
            self.errors.append((status, answer.decode()[:200]))
        await respond(send, status, answer, [(b"content-type", b"application/json")])

    def handle(self, scope, headers: dict, raw: bytes) -> tuple[int, bytes]:
        """One request, by Expo's rules (see the module docstring)."""
        gzipped = headers.get("content-encoding") == "gzip"
        try:
            body = json.loads(gzip.decompress(raw) if gzipped else raw)
        except (ValueError, OSError):
            return refused(400, "VALIDATION_ERROR", "The body is not JSON.")
        path = scope["path"]
        items = (len(body) if isinstance(body, list)
                 else len(body.get("ids", [])) if isinstance(body, dict) else 1)
        self.requests.append(Request(path, items, gzipped, len(raw), headers.get("authorization")))
        if scope["method"] != "POST":
            return refused(405, "METHOD_NOT_ALLOWED", "POST only.")
        if self.access_token and headers.get("authorization") != f"Bearer {self.access_token}":
            return refused(401, "UNAUTHORIZED",
                           "Enhanced push security is on: a valid access token is required.")
        if path == "/--/api/v2/push/send":
            return self.push(body if isinstance(body, list) else [body])
        if path == "/--/api/v2/push/getReceipts":
            return self.get_receipts(body)
        return refused(404, "NOT_FOUND", "No such endpoint.")

    def push(self, messages: list) -> tuple[int, bytes]:
        """The send endpoint."""
        if len(messages) > 100:
            return refused(400, "PUSH_TOO_MANY_NOTIFICATIONS", "At most 100 notifications a request.")
        for message in messages:
            invalid = check_message(message)
            if invalid:
                return refused(400, "VALIDATION_ERROR", invalid)
        if not self._within_rate(len(messages)):
            return refused(429, "TOO_MANY_REQUESTS", "More than 600 notifications a second.")
        return 200, json.dumps({"data": [self.ticket(message) for message in messages]}).encode()

    def _within_rate(self, count: int) -> bool:
        """Whether `count` more notifications keep the last second at most RATE."""
        now = self.clock()
        while self._window and self._window[0][0] <= now - 1.0:
            self._window.popleft()
        if sum(n for _, n in self._window) + count > RATE:
            return False
        self._window.append((now, count))
        return True

    def ticket(self, message: dict) -> dict:
        """The ticket of one valid message."""
        token = message["to"]
        if len(json.dumps(message.get("data", {})).encode()) > 4096:
            return error_ticket("MessageTooBig", "Message too big.")
        if token not in self.registered:
            return error_ticket("DeviceNotRegistered",
                                f"{token} is not a registered push notification recipient")
        ticket = str(uuid.uuid4())
        self.sent.append(Sent(token, message, ticket))
        error = self.receipt_errors.get(token)
        receipt = {"status": "ok"} if error is None else {  # Expo's messages name the token
            "status": "error", "message": f'"{token}" failed: {error}', "details": {"error": error}}
        self.receipts[ticket] = (time.monotonic(), receipt)
        return {"status": "ok", "id": ticket}

    def get_receipts(self, body) -> tuple[int, bytes]:
        """The getReceipts endpoint: the receipts that exist now, by id."""
        ids = body.get("ids") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            return refused(400, "VALIDATION_ERROR", "ids must be a list of strings.")
        if len(ids) > 1000:
            return refused(400, "PUSH_TOO_MANY_RECEIPTS", "At most 1000 receipts a request.")
        self.receipts_asked.extend(ids)
        now, found = time.monotonic(), {}
        for ticket in ids:
            sent_at, receipt = self.receipts.get(ticket, (None, None))
            if sent_at is not None and sent_at + self.receipt_after <= now < sent_at + self.receipt_kept:
                found[ticket] = receipt
        return 200, json.dumps({"data": found}).encode()


def check_message(message) -> str | None:
    """Why a message is invalid, or None."""
    if not isinstance(message, dict):
        return "A message must be an object."
    if not isinstance(message.get("to"), str) or not TOKEN.match(message["to"]):
        return f'"to" must be an Expo push token, got {str(message.get("to"))[:60]!r}.'
    if message.get("priority", "default") not in ("default", "normal", "high"):
        return '"priority" must be default, normal or high.'
    for name in ("ttl", "badge", "expiration"):
        value = message.get(name, 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return f'"{name}" must be a non-negative integer.'
    if not isinstance(message.get("data", {}), dict):
        return '"data" must be an object.'
    for name in ("title", "body", "sound", "channelId", "subtitle"):
        if name in message and not isinstance(message[name], str):
            return f'"{name}" must be a string.'
    return None


def error_ticket(error: str, message: str) -> dict:
    """A ticket for a message Expo will not send."""
    return {"status": "error", "message": message, "details": {"error": error}}


def refused(status: int, code: str, message: str) -> tuple[int, bytes]:
    """A request-level error as Expo writes it."""
    return status, json.dumps({"errors": [{"code": code, "message": message}]}).encode()
