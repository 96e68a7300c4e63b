"""The users and conversations a fault test's traffic runs on, created through the API."""

import uuid
from collections.abc import Callable
from dataclasses import dataclass

import requests

from counts.identity import mint_token
from tests.support.environment import SECRET

SETUP_TIMEOUT = 10.0


@dataclass
class World:
    """The users and conversations a test's traffic runs on."""

    users: list[str]
    members: dict[str, list[str]]  # conversation id -> its members
    busy: tuple[str, ...]  # conversations with messages and reads both ways
    # One-way conversations of their own users (first member sends, nobody marks read): the
    # recipients' counts only grow, so a bump they miss always shows. A test may stop writing
    # to them, so that only the outbox could ever bump them.
    quiet: tuple[str, ...]

    @property
    def conversations(self) -> tuple[str, ...]:
        """Every conversation, busy then quiet."""
        return self.busy + self.quiet


def world_of(create: Callable[[list[str]], str], busy_users: int = 6, quiet_users: int = 4) -> World:
    """Users in busy, overlapping conversations and quiet one-way pairs, each conversation made by
    `create` (its members, the first its creator; its id)."""
    busy = [str(uuid.uuid4()) for _ in range(busy_users)]
    quiet = [str(uuid.uuid4()) for _ in range(quiet_users)]
    groups = [busy, busy[:2], busy[2:5], [busy[1], busy[-1]]]
    pairs = [quiet[i:i + 2] for i in range(0, quiet_users, 2)]
    members = {create(group): group for group in groups + pairs}
    ids = list(members)
    return World(busy + quiet, members, tuple(ids[:len(groups)]), tuple(ids[len(groups):]))


def build_world(url: str, busy_users: int = 6, quiet_users: int = 4) -> World:
    """The world, its conversations created through the API."""
    headers = {"Authorization": f"Bearer {mint_token(SECRET, 'fault-setup', service=True)}"}
    with requests.Session() as http:
        def create(group: list[str]) -> str:
            created = http.post(f"{url}/v1/conversations", json={"member_ids": group},
                                headers=headers, timeout=SETUP_TIMEOUT)
            assert created.status_code == 201, created.text
            return created.json()["conversation_id"]

        return world_of(create, busy_users, quiet_users)
