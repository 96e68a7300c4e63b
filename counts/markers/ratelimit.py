"""Per-user (and, for unauthenticated callers, per-IP) request limits, counted in Redis.

Fixed windows: simple, one counter per subject, and enough to stop a client polling far faster
than the service asks. Trusted services are not limited. If Redis cannot count, requests pass:
a limiter must not turn a Redis outage into an API outage. (A poll's request is counted by the
marker script itself, in the same round trip: counts.markers.scripts.READ_MARKER.)
"""

import logging
from uuid import UUID

import redis

from counts.errors import TooManyRequests
from counts.markers.keys import rate_key
from counts.markers.scripts import lua
from counts.observability import metrics

log = logging.getLogger(__name__)

# KEYS[1] = a rate key; ARGV[1] = window in seconds. Returns the requests in this window.
COUNT_REQUEST = lua("""
local hits = redis.call('INCR', KEYS[1])
if hits == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return hits
""")


def count_request(client: redis.Redis, subject: str, window: int) -> int:
    """Count one request of `subject` in its window; the requests counted so far."""
    return COUNT_REQUEST([rate_key(subject)], [window], client=client)


def window_left(client: redis.Redis, subject: str) -> int:
    """Seconds until `subject`'s rate window resets (at least 1)."""
    return max(1, client.ttl(rate_key(subject)))


class RateLimit:
    """How many requests a user or an IP may make per window; 0 means unlimited."""

    def __init__(self, per_user: int, per_ip: int, window: int = 60):
        self.per_user = per_user
        self.per_ip = per_ip
        self.window = window

    def check_user(self, client: redis.Redis, user_id: UUID, poll_interval: str,
                   counted: int | None = None) -> None:
        """Count a user's request (unless `counted` already did) and refuse it over the limit."""
        self._check(client, str(user_id), self.per_user, poll_interval, counted)

    def check_anonymous(self, client: redis.Redis, address: str, poll_interval: str) -> None:
        """Count an unauthenticated request from `address` and refuse it over the limit."""
        self._check(client, f"ip:{address}", self.per_ip, poll_interval)

    def _check(self, client: redis.Redis, subject: str, limit: int, poll_interval: str,
               counted: int | None = None) -> None:
        if limit <= 0:
            return
        try:
            hits = counted if counted is not None else count_request(client, subject, self.window)
            if hits <= limit:
                return
            retry_after = window_left(client, subject)
        except redis.RedisError as error:
            log.warning("rate limit not enforced, redis failed: %r", error)
            metrics.redis_failed("rate_limit")
            return
        metrics.RATE_LIMITED.labels("ip" if subject.startswith("ip:") else "user").inc()
        raise TooManyRequests(
            f"More than {limit} requests in {self.window} s; poll every {poll_interval} s.",
            headers={"Retry-After": str(retry_after), "X-Poll-Interval": poll_interval})
