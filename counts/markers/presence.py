"""Who is in the foreground: the workers holding a user's live streams, and on which devices.

A worker's feed writes its streams' users here every heartbeat (counts.live.feed), each with the
push device the stream named (`?device_id=`), if it named one; the push dispatcher skips alerts
to the devices found here (or to every device of a user found here: COUNTS_PUSH_PRESENCE=user).
A SIGKILLed worker stops refreshing, and its entries lapse within two heartbeats.

One sorted set per user, scored by expiry; a member is "<device>|<worker>", "*" standing for a
stream that named no device.
"""

import time
from collections.abc import Iterable

import redis

from counts.markers.keys import presence_key

Present = tuple[str, str | None]  # (user id, device id or None): what a live stream stands for
ANY_DEVICE = "*"  # a stream that named no device


def _member(worker: str, device: str | None) -> str:
    return f"{device or ANY_DEVICE}|{worker}"


def mark_live(client: redis.Redis, worker: str, present: Iterable[Present], expires_at: float) -> None:
    """Say that `worker` holds live connections of these (user, device)s until `expires_at`."""
    pipe = client.pipeline(transaction=False)
    ttl = max(1, int(expires_at - time.time()) + 1)
    for uid, device in present:
        key = presence_key(uid)
        pipe.zadd(key, {_member(worker, device): expires_at})
        pipe.expire(key, ttl)
    pipe.execute()


def unmark_live(client: redis.Redis, worker: str, present: Iterable[Present]) -> None:
    """Say that `worker` holds no live connection of these (user, device)s any more."""
    pipe = client.pipeline(transaction=False)
    for uid, device in present:
        pipe.zrem(presence_key(uid), _member(worker, device))
    pipe.execute()


def live_devices(client: redis.Redis, user_ids: Iterable[str]) -> dict[str, set[str]]:
    """For each of these users with an open SSE or WebSocket connection, the devices those
    connections named ("*" for one that named none), in one round trip.

    Long-polls do not count: an app between two polls is not known to be in the foreground.
    """
    user_ids = [str(uid) for uid in user_ids]
    now = time.time()
    pipe = client.pipeline(transaction=False)
    for uid in user_ids:
        pipe.zrangebyscore(presence_key(uid), f"({now}", "+inf")
    found = {}
    for uid, members in zip(user_ids, pipe.execute(), strict=True):
        if members:
            found[uid] = {(m.decode() if isinstance(m, bytes) else m).split("|", 1)[0] for m in members}
    return found


def live_users(client: redis.Redis, user_ids: Iterable[str]) -> set[str]:
    """The users with at least one open SSE or WebSocket connection, on any device."""
    return set(live_devices(client, user_ids))
