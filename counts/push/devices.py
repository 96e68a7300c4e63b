"""The device registry: who may be pushed where. Tokens are secrets: stored, never logged or shown."""

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID, uuid4

from counts.errors import InvalidInput, NotFound
from counts.postgres.queries import push as push_sql
from counts.settings import Settings

PLATFORMS = ("webpush", "apns", "fcm")
APNS_ENVIRONMENTS = ("production", "sandbox")


@dataclass(frozen=True)
class Device:
    """One registered app install: where its pushes go."""

    id: UUID
    user_id: UUID
    platform: str
    token: str
    settings: dict[str, Any]
    hold_until: float = float("-inf")  # epoch: pushed recently, the next push waits until then

    @property
    def hint(self) -> str:
        """What logs and the API show instead of the token."""
        return token_hint(self.token)


def token_hint(token: str) -> str:
    """A short hash of a token: enough to tell devices apart in logs, useless to send to."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:12]


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


@dataclass(frozen=True)
class Registry:
    """What the device endpoints need to know of the push configuration."""

    platforms: frozenset[str]
    hosts: HostRules
    apns_topics: tuple[str, ...]
    max_devices: int
    webpush_key: str | None  # the applicationServerKey, when Web Push is configured

    @classmethod
    def from_settings(cls, settings: Settings) -> "Registry":
        """What registration needs of each provider's settings; a bad VAPID key fails here, at
        start-up."""
        from counts.push import providers, vapid  # the providers know the devices: not at the top
        from counts.push.providers.apns import ApnsSettings
        from counts.push.providers.webpush import WebPushSettings

        webpush, apns = settings.section(WebPushSettings), settings.section(ApnsSettings)
        key = webpush.private_key
        return cls(frozenset(providers.configured(settings)), HostRules(webpush.allowed_hosts),
                   apns.topics, settings.push.max_devices,
                   vapid.public_key(vapid.load_private_key(key)) if key else None)

    def check(self, body: dict) -> tuple[str, dict]:
        """The (token, settings) to store for a validated body, or 422 for what we won't push."""
        platform = body["platform"]
        if platform not in self.platforms:
            raise InvalidInput(f"Push through {platform} is not configured on this service.")
        if platform == "webpush":
            subscription = body["subscription"]
            if not self.hosts.allows(subscription["endpoint"]):
                raise InvalidInput("The subscription's endpoint must be https on a push service "
                                   "this service allows (COUNTS_WEBPUSH_ALLOWED_HOSTS).")
            return subscription["endpoint"], dict(subscription["keys"])
        if platform == "apns":
            if self.apns_topics and body["topic"] not in self.apns_topics:
                raise InvalidInput(f"APNs topic {body['topic']!r} is not one of this service's apps.")
            return body["token"].lower(), {"topic": body["topic"], "environment": body["environment"]}
        return body["token"], {}


def register(cur, user_id: UUID, platform: str, token: str, settings: dict,
             keep: int) -> tuple[UUID, bool]:
    """Store a device for a user; (device id, created). The same token again keeps its id."""
    return push_sql.register_device(cur, uuid4(), user_id, platform, token, settings, keep)


def describe(row: tuple) -> dict:
    """A device as the API shows it: never the token, only its hint."""
    device_id, platform, token, settings, registered_at = row
    shown = {"device_id": str(device_id), "platform": platform, "token_hint": token_hint(token),
             "registered_at": registered_at.isoformat() if isinstance(registered_at, datetime)
             else str(registered_at)}
    if platform == "webpush":
        shown["endpoint_host"] = urlsplit(token).hostname
    elif platform == "apns":
        shown.update(topic=settings.get("topic"), environment=settings.get("environment"))
    return shown


def list_devices(cur, user_id: UUID) -> list[dict]:
    """A user's devices, tokens masked."""
    return [describe(row) for row in push_sql.user_devices(cur, user_id)]


def remove(cur, user_id: UUID, device_id: UUID) -> None:
    """Forget one of a user's devices, or 404."""
    if not push_sql.delete_device(cur, user_id, device_id):
        raise NotFound(f"User {user_id} has no device {device_id}.")
