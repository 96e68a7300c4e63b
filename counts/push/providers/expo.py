"""Expo's push service: what Expo and React Native apps send to (`ExponentPushToken[...]`).

Expo relays to APNs and FCM and answers twice: a ticket per message at once (Expo has it), and a
receipt per ticket later (what Apple or Google said), fetched by the dispatcher's receipt checker
(counts.push.receipts) between COUNTS_EXPO_RECEIPT_DELAY and 24 hours after the send. Sends go as
JSON arrays of at most 100 messages, gzipped above 1 KiB, with the access token when push
security is on; the project's 600 notifications a second are shared by every dispatcher
(counts.markers.sendrate). As expo-server-sdk-node does, the ticket list must match the messages.
"""

import gzip
import json
import logging
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from marshmallow import Schema, fields, validate

from counts.observability import metrics
from counts.push.devices import Device
from counts.push.payload import Push
from counts.push.providers import (
    ACCEPTED,
    FAILED,
    GONE,
    RETRY,
    Outcome,
    http_client,
    nothing_more,
    retry_after,
    token_only,
    transport_failure,
)
from counts.settings import PushSettings, SettingsError
from counts.settings.parse import choice, number, setting, text, text_or_default

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExpoSettings:
    """Expo's push service (Expo and React Native apps), with its tickets and receipts."""

    push: str = setting("COUNTS_EXPO_PUSH", "off", "on: push to Expo push tokens.",
                        choice("on", "off"))
    access_token: str | None = setting(
        "COUNTS_EXPO_ACCESS_TOKEN", None, "Sent as a bearer token; required once the project "
        "turns on Expo's enhanced push security.", text)
    url: str = setting("COUNTS_EXPO_URL", "https://exp.host", "Expo's base URL (a fake's in "
                       "tests); /--/api/v2/push/... is appended.", text_or_default)
    channel_id: str | None = setting(
        "COUNTS_EXPO_CHANNEL_ID", None, "The Android notification channel of alerts (the app must "
        "create it: Android shows nothing for a channel it lacks).", text)
    receipt_delay: float = setting(
        "COUNTS_EXPO_RECEIPT_DELAY", 900.0, "Seconds after a send before its receipt is asked "
        "for (Expo: 15 minutes; receipts are kept 24 hours).", number(float, above=0))
    rate: float = setting("COUNTS_EXPO_RATE", 600.0, "Notifications a second for the project, "
                          "across every dispatcher (Expo's limit is 600).", number(float, above=0))
    alert_title: str = setting("COUNTS_EXPO_ALERT_TITLE", "New message", "An alert's title (never "
                               "the message's text).", text_or_default)
    alert_body: str = setting("COUNTS_EXPO_ALERT_BODY", "{total} unread", "An alert's body; "
                              "{total} is the user's unread total.", text_or_default)

    def __post_init__(self) -> None:
        try:
            self.alert_body.format(total=0)
        except (KeyError, IndexError, ValueError):
            raise SettingsError("COUNTS_EXPO_ALERT_BODY may use {total} and nothing else") from None

    @property
    def configured(self) -> bool:
        """Whether this service pushes through Expo."""
        return self.push == "on"


# expo-server-sdk-node's isExpoPushToken: ExponentPushToken[...] or ExpoPushToken[...], or a
# bare UUID (its older form).
TOKEN = re.compile(r"^(?:Expo(?:nent)?PushToken\[[^\[\]\s]{1,200}\]"
                   r"|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$")


class ExpoDevice(Schema):
    """`POST /v1/users/{id}/devices` for an Expo app install."""

    platform = fields.String(required=True, validate=validate.Equal("expo"))
    token = fields.String(required=True, validate=validate.Regexp(
        TOKEN, error="Not an Expo push token (ExponentPushToken[...])."))


accept = token_only
shown = nothing_more


PLATFORM = "expo"
SETTINGS = ExpoSettings
REGISTRATION = ExpoDevice

SEND_PATH = "/--/api/v2/push/send"
RECEIPTS_PATH = "/--/api/v2/push/getReceipts"
BATCH = 100  # messages per send request (Expo's limit)
RECEIPT_BATCH = 1000  # ids per getReceipts request (Expo's limit)
GZIP_ABOVE = 1024  # bytes: as the Node SDK does
# The errors a ticket or receipt may carry that say the token will never work again.
GONE_ERRORS = {"DeviceNotRegistered"}
EMBEDDED_TOKEN = re.compile(r"Expo(?:nent)?PushToken\[[^\]]*\]?")


@dataclass(frozen=True)
class Receipt:
    """What Expo said, later, of one ticket."""

    ok: bool
    error: str = ""  # details.error: DeviceNotRegistered, MessageRateExceeded...
    message: str = ""


class Expo:
    """Pushes to Expo push tokens, a batch per request; reads receipts."""

    name = "expo"
    batch_size = BATCH
    receipt_batch = RECEIPT_BATCH

    def __init__(self, own: ExpoSettings, client: httpx.Client):
        self.own, self.client = own, client
        self.base_url = own.url.rstrip("/")
        self.send_rate = own.rate
        self.receipt_delay = own.receipt_delay
        self.headers = {"Accept": "application/json", "Accept-Encoding": "gzip, deflate",
                        "Content-Type": "application/json"}
        if own.access_token:
            self.headers["Authorization"] = f"Bearer {own.access_token}"

    def destination(self, device: Device) -> str:
        """Expo's host."""
        return urlsplit(self.base_url).netloc

    def close(self) -> None:
        """Close the kept-open connections."""
        self.client.close()

    def message(self, device: Device, push: Push) -> dict:
        """One message: the counts as `data`, the badge, and generic words only for an alert."""
        message: dict = {"to": device.token, "data": push.body(), "badge": push.icon_badge,
                         "ttl": push.ttl(), "priority": "high" if push.alert else "normal"}
        if push.alert:
            message.update(title=self.own.alert_title, sound="default",
                           body=self.own.alert_body.format(total=push.total))
            if self.own.channel_id:
                message["channelId"] = self.own.channel_id
        return message

    def send(self, device: Device, push: Push) -> Outcome:
        """Push to one device (a batch of one)."""
        return self.send_batch([(device, push)])[0]

    def send_batch(self, items: list[tuple[Device, Push]]) -> list[Outcome]:
        """POST up to 100 messages; an outcome per message, in order (a ticket id on each accepted)."""
        response = self._post(SEND_PATH, [self.message(device, push) for device, push in items])
        if isinstance(response, Outcome):
            return [response] * len(items)
        if response.status_code == 429 or response.status_code >= 500:
            return [Outcome(RETRY, f"HTTP {response.status_code}",
                            retry_after=retry_after(response))] * len(items)
        tickets = _json(response).get("data")
        if response.status_code != 200 or not isinstance(tickets, list) or len(tickets) != len(items):
            codes = _request_errors(response)
            log.error("Expo refused a send of %d messages: HTTP %d %s", len(items),
                      response.status_code, ", ".join(codes) or "(no error code)")
            for code in codes:
                metrics.push_receipt_error(self.name, code)
            return [Outcome(FAILED, f"HTTP {response.status_code} {' '.join(codes)}".strip())] * len(items)
        return [self._ticket(ticket) for ticket in tickets]

    def _ticket(self, ticket: object) -> Outcome:
        """A ticket's outcome: accepted (its receipt is to be read), gone, or an error counted."""
        if not isinstance(ticket, dict):
            return Outcome(FAILED, "a ticket that is not an object")
        if ticket.get("status") == "ok" and isinstance(ticket.get("id"), str):
            return Outcome(ACCEPTED, "ticket", ticket=ticket["id"])
        error = _error_code(ticket)
        metrics.push_receipt_error(self.name, error)
        if error in GONE_ERRORS:
            return Outcome(GONE, f"ticket {error}")
        if error == "MessageRateExceeded":
            return Outcome(RETRY, f"ticket {error}")
        return Outcome(FAILED, f"ticket {error}: {_scrubbed(ticket.get('message', ''))}")

    def receipts(self, ticket_ids: list[str]) -> dict[str, Receipt] | None:
        """The receipts Expo has for these tickets (at most 1,000), by ticket id; None when Expo
        did not answer (ask again later). Tickets without a receipt yet are absent."""
        response = self._post(RECEIPTS_PATH, {"ids": ticket_ids})
        if isinstance(response, Outcome) or response.status_code != 200:
            log.warning("Expo receipts not read: %s", response.detail if isinstance(response, Outcome)
                        else f"HTTP {response.status_code} {' '.join(_request_errors(response))}")
            return None
        data = _json(response).get("data")
        if not isinstance(data, dict):
            return None
        found = {}
        for ticket_id, receipt in data.items():
            if isinstance(receipt, dict):
                found[ticket_id] = Receipt(receipt.get("status") == "ok", _error_code(receipt),
                                           _scrubbed(receipt.get("message", "")))
        return found

    def _post(self, path: str, body: object) -> httpx.Response | Outcome:
        """POST JSON (gzipped when large); the response, or the outcome of no answer."""
        content = json.dumps(body, separators=(",", ":")).encode()
        headers = self.headers
        if len(content) > GZIP_ABOVE:
            content, headers = gzip.compress(content), {**headers, "Content-Encoding": "gzip"}
        try:
            return self.client.post(self.base_url + path, content=content, headers=headers)
        except httpx.HTTPError as error:
            return transport_failure(error)


def _scrubbed(message: object) -> str:
    """Expo's message for the log: tokens (Expo names them in its messages) replaced."""
    return EMBEDDED_TOKEN.sub("<token>", str(message))[:200]


def _json(response: httpx.Response) -> dict:
    """The response's JSON object, or {}."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error_code(item: dict) -> str:
    """details.error of a ticket or receipt ("unknown" without one)."""
    details = item.get("details")
    error = details.get("error") if isinstance(details, dict) else None
    return error if isinstance(error, str) and error else "unknown"


def _request_errors(response: httpx.Response) -> list[str]:
    """The codes of a refused request's `errors` (TOO_MANY_REQUESTS, UNAUTHORIZED...)."""
    errors = _json(response).get("errors")
    if not isinstance(errors, list):
        return []
    return [str(error.get("code")) for error in errors if isinstance(error, dict) and error.get("code")]


def from_settings(own: ExpoSettings, push: PushSettings) -> Expo:
    """The Expo provider from COUNTS_EXPO_* (COUNTS_EXPO_URL pointing at a fake in tests)."""
    return Expo(own, http_client(push))
