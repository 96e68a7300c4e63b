"""The device registry: who may be pushed where. Tokens are secrets: stored, never logged or shown.

What a platform accepts and how its devices are shown is the provider's (counts.push.providers);
counts.push.registry puts them together for the device endpoints.
"""

import hashlib
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

from psycopg2.extensions import cursor

from counts.errors import NotFound
from counts.postgres.queries import push as push_sql


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
