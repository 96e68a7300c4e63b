"""The device registry: who may be pushed where. Tokens are secrets: stored, never logged or shown.

What a platform accepts and how its devices are shown is the provider's (counts.push.providers);
counts.push.registry puts them together for the device endpoints.
"""

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

from psycopg2.extensions import cursor

from counts.errors import Forbidden, NotFound
from counts.postgres.queries import push as push_sql
from counts.push.vapid import b64url_decode


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


def register(cur: cursor, user_id: UUID, platform: str, token: str, settings: dict,
             keep: int) -> tuple[UUID, bool]:
    """Store a device for a user; (device id, created). The same token again keeps its id."""
    return push_sql.register_device(cur, uuid4(), user_id, platform, token, settings, keep)


def remove(cur: cursor, user_id: UUID, device_id: UUID) -> None:
    """Forget one of a user's devices, or 404."""
    if not push_sql.delete_device(cur, user_id, device_id):
        raise NotFound(f"User {user_id} has no device {device_id}.")


def resubscribe(cur: cursor, old_endpoint: str, old_auth: bytes, endpoint: str, settings: dict) -> UUID:
    """Replace a browser's subscription (pushsubscriptionchange, in a service worker, where no
    user token is): allowed to whoever knows the old subscription's endpoint and auth secret,
    the two things only that browser and this service hold. The device keeps its id; 403 if
    the old subscription is not one this service holds (gone already, or never)."""
    found = push_sql.find_subscription(cur, old_endpoint)
    if found is None or not hmac.compare_digest(b64url_decode(found[1]["auth"]), old_auth):
        raise Forbidden("The old subscription is not one this service holds: register the new "
                        "one from the page, with the user's token.")
    push_sql.replace_subscription(cur, found[0], endpoint, settings)
    return found[0]

