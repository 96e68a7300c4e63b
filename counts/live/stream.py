"""What SSE and WebSocket share: one stream's place on the feed and the counts it sends.

The counts are read from Postgres after the marker that labels them (invariant 2): a stream's
first counts with the marker read when it opened, every later change with the marker the feed
found. A stream sends a marker only when it differs from the last one sent, so never the same
ETag twice in a row, and a client resuming with the current ETag gets nothing it already has.
"""

import json
import logging
import random
import time
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import redis

from counts import markers
from counts.errors import AtCapacity, DependencyUnavailable
from counts.identity import Principal
from counts.live.feed import Waiter
from counts.observability import metrics
from counts.representation import counts_body, degraded_etag, etag_matches

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Update:
    """Counts to send: the ETag (as the header's value) and the 200 body's JSON."""

    etag: str
    body: str


class Subscription:
    """One stream of one user's counts, registered on the worker's feed while open."""

    def __init__(self, resources: Any, user_id: UUID, first: markers.MarkerRead | None,
                 principal: Principal, device_id: UUID | None = None):
        self.res = resources
        self.user_id = user_id
        self.principal = principal
        self.expires_at = principal.expires_at
        self.first_lsn = None if first is None else first.lsn
        self.waiter = Waiter(str(user_id), None if first is None else first.token, live=True,
                             device=None if device_id is None else str(device_id))

    def open(self) -> bool:
        """Register on the feed; False when the worker is full or shutting down."""
        return self.res.feed.add(self.waiter)

    def close(self) -> None:
        """Leave the feed (idempotent)."""
        self.res.feed.remove(self.waiter)

    def first(self, since: str | None) -> Update | None:
        """The current counts, unless `since` (Last-Event-ID, ?etag=) is the current ETag.

        Raises DependencyUnavailable when Postgres cannot answer.
        """
        marker = self.waiter.marker
        if marker is not None and etag_matches(since, marker):
            return None
        return self._read(marker, self.first_lsn)

    def wait(self, seconds: float) -> None:
        """Until the feed wakes this stream or `seconds` pass (capped at its token's expiry)."""
        self.waiter.wait(min(seconds, self.expires_at - time.time()))

    @property
    def closing(self) -> bool:
        """The worker is shutting down: end with the suggested delay (retry_ms)."""
        return self.waiter.closing

    @property
    def trusted(self) -> bool:
        """Whether the token behind the stream still stands: False once it expired or its
        signing key was withdrawn from the JWKS (then the stream ends)."""
        return self.res.tokens.trusts(self.principal)

    def change(self) -> Update | None:
        """The new counts if the feed found a new marker; None otherwise, or if Postgres could
        not say (the marker is then re-checked at the next heartbeat, and sent then)."""
        fresh = self.waiter.take()
        if fresh is None:
            return None
        try:
            update = self._read(fresh.token, fresh.lsn)
        except DependencyUnavailable as error:
            log.warning("stream: counts unavailable, retried at the next heartbeat: %s", error)
            return None
        self.waiter.marker = fresh.token
        return update

    def heartbeat(self) -> None:
        """Ask the feed to re-check the marker (a lost wake-up costs one heartbeat at most)."""
        self.res.feed.recheck(self.waiter.user)

    def _read(self, marker: str | None, lsn: int | None) -> Update:
        """The user's counts, labelled with `marker`, read before this query, from a database
        that has replayed `lsn`, the WAL position read with it (invariant 11)."""
        res = self.res
        counts = res.postgres.read_seen(lsn, res.source.unread_counts, [self.user_id])[self.user_id]
        etag = f'"{marker or degraded_etag()}"'
        return Update(etag, json.dumps(counts_body(self.user_id, counts)))


def open_subscription(res: Any, uid: UUID, principal: Principal, since: str | None,
                      device_id: UUID | None = None) -> tuple[Subscription, Update | None]:
    """For a caller allowed to see `uid`'s counts: the stream's place on the feed and its first
    counts. A full worker (503) raises a Problem before the stream starts."""
    if res.feed.full:
        refuse_at_capacity(res)
    try:
        first = markers.read(res.redis, uid, res.marker_ttl)
    except redis.RedisError:
        metrics.redis_failed("read_marker")
        first = None  # degraded: counts labelled with no marker; the feed re-checks later
    sub = Subscription(res, uid, first, principal, device_id)
    if not sub.open():
        refuse_at_capacity(res)
    try:
        return sub, sub.first(since)
    except BaseException:
        sub.close()
        raise


def refuse_at_capacity(res: Any) -> None:
    """503 with a jittered Retry-After: refused clients must not all come back at once."""
    seconds = random.randint(res.settings.http.retry_after, 3 * res.settings.http.retry_after)
    raise AtCapacity("This server holds all the live connections it can; retry later or poll.",
                     headers={"Retry-After": str(seconds)})
