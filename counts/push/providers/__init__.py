"""Push providers behind one small interface, one module each (after Matrix Sygnal's pushkins).

A provider sends one push to one device and says what happened as an `Outcome`; the dispatcher
decides what to do about it (retry when, forget the device, count it). Providers never raise for
a provider's answer or a network failure, and never log a token (only `Device.hint`).
"""

import email.utils
import importlib
import logging
import ssl
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol

import certifi
import httpx

from counts.push.devices import Device
from counts.push.payload import Push
from counts.settings import PushSettings, Settings

log = logging.getLogger(__name__)

# Tokens are in the URLs (a Web Push endpoint, an APNs /3/device/<token> path) and bearer tokens
# in the headers: httpx logs every request line at INFO, httpcore, h2 and hpack log headers and
# frames at DEBUG, google-auth its token requests. None of them may write a line at any level we
# run at, even COUNTS_LOG_LEVEL=debug.
for _name in ("httpx", "httpcore", "h2", "hpack", "google.auth", "google_auth_httplib2", "urllib3"):
    logging.getLogger(_name).setLevel(logging.WARNING)

ACCEPTED, RETRY, GONE, FAILED = "accepted", "retry", "gone", "failed"
# Not sent, by rule: the push service's browser would punish this push (Safari revokes a
# subscription after pushes that show nothing). Counted; the job is done.
WITHHELD = "withheld"


@dataclass(frozen=True)
class Outcome:
    """What a provider said about one push."""

    kind: str  # ACCEPTED, RETRY (later, maybe after `retry_after`), GONE (forget the device),
    # FAILED, WITHHELD
    detail: str = ""  # for the log: status and reason, never the token
    retry_after: float | None = None  # seconds the provider asked us to wait
    unreachable: bool = False  # no answer at all (refused, reset, timed out): back off the host
    settings: dict[str, Any] | None = None  # device settings learnt (an APNs token's environment)
    ticket: str | None = None  # accepted by a provider that answers later (Expo): its receipt's id


class Provider(Protocol):
    """What the dispatcher needs of a push service."""

    name: str

    def destination(self, device: Device) -> str:
        """The host this device's pushes go to (the dispatcher backs off per host)."""

    def send(self, device: Device, push: Push) -> Outcome:
        """Push to one device; never raises for the provider's answer."""

    def close(self) -> None:
        """Close kept-open connections."""


class BatchProvider(Provider, Protocol):
    """A push service taking many devices' pushes in one request, at a rate shared by every
    dispatcher, and answering later in receipts (Expo)."""

    batch_size: int  # pushes per request, at most
    send_rate: float  # pushes a second, across every dispatcher
    receipt_delay: float  # seconds after a send before its receipt is asked for
    receipt_batch: int  # receipts per request, at most

    def send_batch(self, items: list[tuple[Device, Push]]) -> list[Outcome]:
        """Push to many devices at once; an outcome each, in order."""

    def receipts(self, ticket_ids: list[str]) -> dict[str, Any] | None:
        """The receipts there are for these tickets, by id; None when the provider did not answer."""


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """Verify providers against COUNTS_PUSH_CA_FILE if set, else certifi's bundle; never unverified."""
    return ssl.create_default_context(cafile=ca_file or certifi.where())


def http_client(push: PushSettings, http2: bool = False) -> httpx.Client:
    """A pooled client with the push timeout on every phase (connect, write, read, pool)."""
    return httpx.Client(http2=http2, verify=tls_context(push.ca_file),
                        timeout=httpx.Timeout(push.timeout),
                        limits=httpx.Limits(max_connections=push.concurrency,
                                            max_keepalive_connections=push.concurrency),
                        headers={"User-Agent": "counts-push"}, follow_redirects=False)


def retry_after(response: httpx.Response) -> float | None:
    """The Retry-After of a response in seconds (delta-seconds or an HTTP-date), or None."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def transport_failure(error: httpx.HTTPError) -> Outcome:
    """A request that got no answer: retry later, and back off that host meanwhile."""
    return Outcome(RETRY, f"no answer: {type(error).__name__}", unreachable=True)


def token_only(body: dict, own: object) -> tuple[str, dict]:
    """accept() for a platform whose registration is its token alone (FCM, Expo)."""
    return body["token"], {}


def nothing_more(token: str, settings: dict) -> dict:
    """shown() for a platform whose device list shows its token's hint alone (FCM, Expo)."""
    return {}


# One module each, exporting: PLATFORM (its name), SETTINGS (its settings section, read from the
# environment), REGISTRATION (the marshmallow schema of a device registration), accept(body,
# section) -> (token, settings) (or InvalidInput), shown(token, settings) -> what the device list
# shows, and from_settings(section, push settings) -> the Provider.
PLATFORMS = ("webpush", "apns", "fcm", "expo")


def modules() -> dict[str, ModuleType]:
    """Each platform's module, by platform."""
    return {name: importlib.import_module(f"{__name__}.{name}") for name in PLATFORMS}


def sections(settings: Settings) -> dict[str, tuple[ModuleType, Any]]:
    """Each platform's module and its settings section, read from the settings' environment."""
    return {name: (module, settings.section(module.SETTINGS)) for name, module in modules().items()}


def build(settings: Settings) -> dict[str, Provider]:
    """The configured providers, by platform; one log line for each one that is not."""
    providers = {}
    for name, (module, own) in sections(settings).items():
        if own.configured:
            providers[name] = module.from_settings(own, settings.push)
        else:
            log.warning("push provider %s is not configured: its devices are skipped", name)
    return providers
