"""Who is in the foreground: the workers holding a user's live streams, as push reads it.

A worker's feed writes its streams' users here every heartbeat (counts.live.feed); the push
dispatcher skips alerts for users found here. A SIGKILLed worker stops refreshing, and its
entries lapse within two heartbeats.
"""

import time
from collections.abc import Iterable

import redis

from counts.markers.keys import presence_key


def mark_live(client: redis.Redis, worker: str, user_ids: Iterable[str], expires_at: float) -> None:
    """Say that `worker` holds live connections of these users until `expires_at` (unix time)."""
    pipe = client.pipeline(transaction=False)
    ttl = max(1, int(expires_at - time.time()) + 1)
    for uid in user_ids:
        key = presence_key(uid)
        pipe.zadd(key, {worker: expires_at})
        pipe.expire(key, ttl)
    pipe.execute()


def unmark_live(client: redis.Redis, worker: str, user_ids: Iterable[str]) -> None:
    """Say that `worker` holds no live connection of these users any more."""
    pipe = client.pipeline(transaction=False)
    for uid in user_ids:
        pipe.zrem(presence_key(uid), worker)
    pipe.execute()


def live_users(client: redis.Redis, user_ids: Iterable[str]) -> set[str]:
    """The users with at least one open SSE or WebSocket connection, in one round trip.

    Long-polls do not count: an app between two polls is not known to be in the foreground.
    """
    user_ids = [str(uid) for uid in user_ids]
    now = time.time()
    pipe = client.pipeline(transaction=False)
    for uid in user_ids:
        pipe.zcount(presence_key(uid), f"({now}", "+inf")
    return {uid for uid, n in zip(user_ids, pipe.execute(), strict=True) if n}
