"""Per-user change markers in Redis. Every Redis key the service uses is built here.

A marker is a random token that changes whenever anything that can change a user's counts
changes; the counts endpoint's ETag is the marker. Markers are random, never counters, so a marker
that Redis lost (flush, restart, eviction, TTL) is replaced by one no client can hold
(DESIGN.md invariant 4).
"""

import secrets
from collections.abc import Iterable
from uuid import UUID

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

DEFAULT_TTL = 30 * 24 * 3600


def marker_key(user_id: UUID | str) -> str:
    """The key of a user's marker; the {hash tag} keeps a user's keys in one Cluster slot."""
    return f"counts:{{{user_id}}}:marker"


def new_marker() -> str:
    """A fresh marker: 96 random bits, URL- and ETag-safe."""
    return secrets.token_urlsafe(12)


def connect(url: str, timeout: float) -> redis.Redis:
    """A Redis client that fails fast: one reconnect for a dropped socket, then the error."""
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 1),
        health_check_interval=30,
    )


def read_marker(client: redis.Redis, user_id: UUID | str, ttl: int = DEFAULT_TTL) -> str:
    """The user's marker, created (with its TTL) in the same round trip when missing."""
    fresh = new_marker()
    # SET NX GET: returns the existing marker untouched, or stores ours and returns nil.
    existing = client.set(marker_key(user_id), fresh, nx=True, get=True, ex=ttl)
    return fresh if existing is None else existing.decode()


def read_markers(client: redis.Redis, user_ids: Iterable[UUID | str],
                 ttl: int = DEFAULT_TTL) -> dict[str, str]:
    """Markers for many users, created where missing, in one pipelined round trip."""
    user_ids = [str(uid) for uid in user_ids]
    fresh = [new_marker() for _ in user_ids]
    pipe = client.pipeline(transaction=False)
    for user_id, marker in zip(user_ids, fresh, strict=False):
        pipe.set(marker_key(user_id), marker, nx=True, get=True, ex=ttl)
    found = pipe.execute()
    return {uid: mine if theirs is None else theirs.decode()
            for uid, mine, theirs in zip(user_ids, fresh, found, strict=False)}


def bump(client: redis.Redis, user_ids: Iterable[UUID | str], ttl: int = DEFAULT_TTL) -> int:
    """Give each user a new marker, in one pipelined round trip; how many were bumped.

    Call it only after the transaction that changed the counts has committed (invariant 1).
    """
    keys = {marker_key(uid) for uid in user_ids}
    if not keys:
        return 0
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.set(key, new_marker(), ex=ttl)
    pipe.execute()
    return len(keys)
