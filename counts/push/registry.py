"""What the device endpoints need of the push configuration: which platforms this service pushes
to, what each accepts (its provider's registration schema and rules), and how a device is shown.
"""

from dataclasses import dataclass
from datetime import datetime
from types import ModuleType
from typing import Any
from uuid import UUID

from marshmallow import ValidationError
from psycopg2.extensions import cursor

from counts.errors import InvalidInput, NotFound
from counts.postgres.queries import push as push_sql
from counts.push import providers, vapid
from counts.push.devices import token_hint
from counts.push.providers import webpush
from counts.push.providers.webpush import WebPushSettings
from counts.settings import Settings


@dataclass(frozen=True)
class Registry:
    """The platforms' modules and sections, the configured ones, and the registration limits."""

    platforms: dict[str, tuple[ModuleType, Any]]  # every known platform: (module, section)
    max_devices: int
    webpush_key: str | None  # the applicationServerKey, when Web Push is configured

    @classmethod
    def from_settings(cls, settings: Settings) -> "Registry":
        """Read every provider's section; a half-configured provider or a bad VAPID key fails
        here, at start-up."""
        key = settings.section(WebPushSettings).private_key
        return cls(providers.sections(settings), settings.push.max_devices,
                   vapid.public_key(vapid.load_private_key(key)) if key else None)

    def accept(self, body: Any) -> tuple[str, str, dict]:
        """(platform, token, settings) to store for a registration body: 422 when it is not one
        (ValidationError, per field), or names a platform this service does not push to."""
        platform = body.get("platform") if isinstance(body, dict) else None
        # Only a string can name a platform (a list or an object is not even a dict key).
        found = self.platforms.get(platform) if isinstance(platform, str) else None
        if found is None or not isinstance(platform, str):
            raise ValidationError({"platform": [f"Must be one of: {', '.join(self.platforms)}."]})
        module, section = found
        valid = module.REGISTRATION().load(body)
        if not section.configured:
            raise InvalidInput(f"Push through {platform} is not configured on this service.")
        token, device_settings = module.accept(valid, section)
        return platform, token, device_settings

    def accept_resubscription(self, body: Any) -> tuple[str, bytes, str, dict]:
        """(old endpoint, old auth secret, new endpoint, new settings) of a resubscription body:
        422 when it is not one, or the new endpoint is not on an allowed push service; 404 when
        this service does not push to browsers."""
        module, section = self.platforms["webpush"]
        if not section.configured:
            raise NotFound("Web Push is not configured on this service.")
        valid = webpush.Resubscription().load(body if isinstance(body, dict) else {})
        token, device_settings = module.accept({"subscription": valid["subscription"]}, section)
        return (valid["old"]["endpoint"], vapid.b64url_decode(valid["old"]["auth"]), token,
                device_settings)

    def describe(self, row: tuple) -> dict:
        """A device as the API shows it: never the token, only its hint."""
        device_id, platform, token, device_settings, registered_at = row
        shown = {"device_id": str(device_id), "platform": platform, "token_hint": token_hint(token),
                 "registered_at": registered_at.isoformat() if isinstance(registered_at, datetime)
                 else str(registered_at)}
        module = self.platforms.get(platform, (None, None))[0]
        return {**shown, **(module.shown(token, device_settings) if module else {})}

    def list_devices(self, cur: cursor, user_id: UUID) -> list[dict]:
        """A user's devices, tokens masked."""
        return [self.describe(row) for row in push_sql.user_devices(cur, user_id)]
