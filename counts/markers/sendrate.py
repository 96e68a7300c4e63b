"""A push provider's send rate, shared by every dispatcher process: a sliding window in Redis.

Expo allows a project 600 notifications a second, whichever process sends them. Each send of a
batch reserves a moment at which no second (counted back from it) holds more than the limit,
sends included that other dispatchers reserved before it, and is told how long to wait for it:
dispatchers queue behind one another rather than all retrying at once. Not a token bucket: a
bucket holding a second's worth lets a burst and the refill that follows it land in one second.
The clock is Redis's, the one all of them share.
"""

import redis

from counts.markers.keys import send_rate_key, send_rate_sequence_key
from counts.markers.scripts import lua

# Seconds added to the window: requests reach the provider a little closer together than they
# left (connections, scheduling), and a second that counts one too many refuses a whole batch.
MARGIN = 0.05

# KEYS[1] = a provider's reserved sends (a sorted set: member "<n>:<seq>", score = when);
# KEYS[2] = its sequence (unique members). ARGV = limit a second, n sends, margin in seconds.
# Reserves n sends at the earliest moment, at or after every earlier reservation, at which the
# window of 1 + margin seconds ending there holds at most the limit; returns the seconds to wait.
RESERVE = lua("""
local limit, n, margin = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local window = 1 + margin
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local held = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local at, total = now, n
for i = 1, #held, 2 do
  total = total + tonumber(string.match(held[i], '^(%d+):'))
  at = math.max(at, tonumber(held[i + 1]))
end
local i = 1
while total > limit and i <= #held do
  at = math.max(at, tonumber(held[i + 1]) + window)
  total = total - tonumber(string.match(held[i], '^(%d+):'))
  i = i + 2
end
local seq = redis.call('INCR', KEYS[2])
redis.call('ZADD', KEYS[1], at, n .. ':' .. seq)
local ttl = math.ceil(at - now + window) + 1
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[2], ttl)
return tostring(at - now)
""")


def reserve(client: redis.Redis, provider: str, count: int, per_second: float) -> float:
    """Reserve `count` sends of `provider`, at most `per_second` in any second; the seconds to
    wait before making them."""
    return float(RESERVE([send_rate_key(provider), send_rate_sequence_key(provider)],
                         [per_second, count, MARGIN], client=client))
