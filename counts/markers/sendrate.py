"""A push provider's send rate, shared by every dispatcher process: a token bucket in Redis.

Expo allows a project 600 notifications a second, whichever process sends them. Each send
reserves its notifications and is told how long to wait first, so dispatchers queue behind
one another rather than all retrying at once. The clock is Redis's, the one all of them share.
"""

import redis

from counts.markers.keys import send_rate_key
from counts.markers.scripts import lua

# KEYS[1] = a provider's bucket; ARGV = rate per second, capacity, notifications to send.
# Returns the seconds to wait before sending them (a reservation: the tokens are taken now).
RESERVE = lua("""
local rate, capacity, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate) - n
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil((capacity - tokens) / rate) + 1)
if tokens >= 0 then return '0' end
return tostring(-tokens / rate)
""")


def reserve(client: redis.Redis, provider: str, count: int, per_second: float) -> float:
    """Reserve `count` sends of `provider` at `per_second` (bursts of one second's worth);
    the seconds to wait before making them."""
    capacity = max(per_second, count)
    return float(RESERVE([send_rate_key(provider)], [per_second, capacity, count], client=client))
