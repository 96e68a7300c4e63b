"""Firebase Cloud Messaging, HTTP v1: OAuth2 from a service-account file, one POST per device.

google-auth signs the service account's assertion and fetches the access token from the file's
`token_uri` (refreshed before it expires; at once if FCM calls it unauthenticated). Messages are
data-only (the app builds its notification from the counts), every data value a string as FCM
requires, with `collapse_key` and Android priority HIGH for a new message, NORMAL for a badge.
"""

import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

import google.auth.exceptions
import httpx
import urllib3
from google.auth.transport.urllib3 import Request
from google.oauth2 import service_account
from marshmallow import Schema, fields, validate

from counts.push.devices import Device
from counts.push.payload import COLLAPSE_KEY, Push
from counts.push.providers import (
    ACCEPTED,
    FAILED,
    GONE,
    RETRY,
    Outcome,
    http_client,
    nothing_more,
    retry_after,
    tls_context,
    token_only,
    transport_failure,
)
from counts.settings import PushSettings
from counts.settings.parse import setting, text, text_or_default


@dataclass(frozen=True)
class FcmSettings:
    """Firebase Cloud Messaging (Android), HTTP v1."""

    credentials_file: str | None = setting(
        "COUNTS_FCM_CREDENTIALS_FILE", None, "A service-account JSON file of the Firebase project; "
        "set, it turns FCM on.", text)
    url: str = setting("COUNTS_FCM_URL", "https://fcm.googleapis.com", "FCM's base URL (a fake's "
                       "in tests).", text_or_default)

    @property
    def configured(self) -> bool:
        """Whether this service pushes through FCM."""
        return self.credentials_file is not None


class FcmDevice(Schema):
    """`POST /v1/users/{id}/devices` for an Android (FCM) device."""

    platform = fields.String(required=True, validate=validate.Equal("fcm"))
    token = fields.String(required=True, validate=validate.Regexp(r"^[\x21-\x7e]{1,4096}$"))


accept = token_only
shown = nothing_more


PLATFORM = "fcm"
SETTINGS = FcmSettings
REGISTRATION = FcmDevice


SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
# FCM's documented answers that the token will never work again for this sender.
GONE_CODES = {"UNREGISTERED", "SENDER_ID_MISMATCH"}


def data(push: Push) -> dict[str, str]:
    """The counts as FCM data: a map of strings to strings (numbers and booleans as text)."""
    return {key: "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
            for key, value in push.body().items()}


class FCM:
    """Pushes to Android (and any FCM client)."""

    name = "fcm"

    def __init__(self, credentials: service_account.Credentials, base_url: str,
                 client: httpx.Client, token_pool: urllib3.PoolManager):
        self.credentials, self.client = credentials, client
        self.base_url = base_url.rstrip("/")
        self.url = f"{self.base_url}/v1/projects/{credentials.project_id}/messages:send"
        self._token_pool = token_pool
        self._token_request = Request(token_pool)
        self._lock = threading.Lock()

    def destination(self, device: Device) -> str:
        """FCM's host."""
        return urlsplit(self.base_url).netloc

    def access_token(self, rejected: str | None = None) -> str:
        """A valid OAuth2 access token; a new one if FCM just rejected `rejected`."""
        with self._lock:
            if not self.credentials.valid or self.credentials.token == rejected:
                self.credentials.refresh(self._token_request)
            return str(self.credentials.token)

    def close(self) -> None:
        """Close the kept-open connections."""
        self.client.close()
        self._token_pool.clear()

    def send(self, device: Device, push: Push) -> Outcome:
        """POST one message; a 401 gets one retry with a fresh access token."""
        message = {"message": {"token": device.token, "data": data(push), "android": {
            "collapse_key": COLLAPSE_KEY, "priority": "HIGH" if push.alert else "NORMAL",
            "ttl": f"{push.ttl()}s"}}}
        rejected = None
        for _ in range(2):
            try:
                token = self.access_token(rejected)
                response = self.client.post(self.url, json=message,
                                            headers={"Authorization": f"Bearer {token}"})
            except google.auth.exceptions.GoogleAuthError as error:
                return Outcome(RETRY, f"no access token: {str(error)[:200]}", unreachable=True)
            except httpx.HTTPError as error:
                return transport_failure(error)
            status, code = _error(response)
            if response.status_code == 401 and status == "UNAUTHENTICATED" and rejected is None:
                rejected = token
                continue
            return classify(response, status, code)
        return Outcome(RETRY, "unauthenticated twice")


def _error(response: httpx.Response) -> tuple[str, str]:
    """(error.status, the FcmError errorCode) of an error response; empty when absent."""
    if response.status_code == 200:
        return "", ""
    try:
        error = response.json()["error"]
        codes = [detail.get("errorCode", "") for detail in error.get("details", [])
                 if detail.get("@type", "").endswith("google.firebase.fcm.v1.FcmError")]
        return str(error.get("status", "")), codes[0] if codes else ""
    except (ValueError, KeyError, TypeError, AttributeError):
        return "", ""


def classify(response: httpx.Response, status: str, code: str) -> Outcome:
    """FCM's ErrorCode table: UNREGISTERED and SENDER_ID_MISMATCH are gone; QUOTA_EXCEEDED (429),
    UNAVAILABLE (503) and INTERNAL (500) later, after Retry-After; the rest (INVALID_ARGUMENT,
    THIRD_PARTY_AUTH_ERROR...) are our mistakes, which a retry would repeat."""
    detail = f"HTTP {response.status_code} {code or status}".strip()
    if response.status_code == 200:
        return Outcome(ACCEPTED, detail)
    if code in GONE_CODES:
        return Outcome(GONE, detail)
    if response.status_code == 429 or response.status_code >= 500:
        return Outcome(RETRY, detail, retry_after=retry_after(response))
    return Outcome(FAILED, detail)


def from_settings(own: FcmSettings, push: PushSettings) -> FCM:
    """The FCM provider from COUNTS_FCM_CREDENTIALS_FILE (and COUNTS_FCM_URL, for a fake)."""
    try:
        credentials = service_account.Credentials.from_service_account_file(
            own.credentials_file, scopes=[SCOPE])
    except (OSError, ValueError) as error:
        raise RuntimeError(f"COUNTS_FCM_CREDENTIALS_FILE is not a service-account file: {error}") from None
    if not credentials.project_id:
        raise RuntimeError("COUNTS_FCM_CREDENTIALS_FILE has no project_id")
    # urllib3, not requests, for the token endpoint: requests lets REQUESTS_CA_BUNDLE in the
    # environment override the CA a session was given.
    token_pool = urllib3.PoolManager(ssl_context=tls_context(push.ca_file),
                                     timeout=urllib3.Timeout(total=push.timeout))
    return FCM(credentials, own.url, http_client(push), token_pool)
