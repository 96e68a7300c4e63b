"""What SSE and WebSocket share: one stream's place on the feed and the counts it sends.

The counts are read from Postgres after the marker that labels them (invariant 2): a stream's
first counts with the marker read when it opened, every later change with the marker the feed
found. A stream sends a marker only when it differs from the last one sent, so never the same
ETag twice in a row, and a client resuming with the current ETag gets nothing it already has.
"""

import json
import logging
import time
from dataclasses import dataclass
from uuid import UUID

from counts.conditional import etag_matches
from counts.errors import DependencyUnavailable
from counts.live.feed import Waiter
from counts.queries import reads as reads_sql

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Update:
    """Counts to send: the ETag (as the header's value) and the 200 body's JSON."""

    etag: str
    body: str


class Subscription:
    """One stream of one user's counts, registered on the worker's feed while open."""

    def __init__(self, resources, user_id: UUID, marker: str | None, expires_at: float):
        self.res = resources
        self.user_id = user_id
        self.expires_at = expires_at
        self.waiter = Waiter(str(user_id), marker, live=True)

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
        return self._read(marker)

    def wait(self, seconds: float) -> None:
        """Until the feed wakes this stream or `seconds` pass (capped at its token's expiry)."""
        self.waiter.wait(min(seconds, self.expires_at - time.time()))

    @property
    def closing(self) -> bool:
        """The worker is shutting down: end with the suggested delay (retry_ms)."""
        return self.waiter.closing

    @property
    def expired(self) -> bool:
        """The token behind the stream has expired: end it."""
        return time.time() >= self.expires_at

    def change(self) -> Update | None:
        """The new counts if the feed found a new marker; None otherwise, or if Postgres could
        not say (the marker is then re-checked at the next heartbeat, and sent then)."""
        fresh = self.waiter.take()
        if fresh is None:
            return None
        try:
            update = self._read(fresh)
        except DependencyUnavailable as error:
            log.warning("stream: counts unavailable, retried at the next heartbeat: %s", error)
            return None
        self.waiter.marker = fresh
        return update

    def heartbeat(self) -> None:
        """Ask the feed to re-check the marker (a lost wake-up costs one heartbeat at most)."""
        self.res.feed.recheck(self.waiter.user)

    def _read(self, marker: str | None) -> Update:
        """The user's counts from Postgres, labelled with `marker`, read before this query."""
        from counts.views.reads import counts_body, degraded_etag

        counts = self.res.db.read(reads_sql.unread_counts, [self.user_id])[self.user_id]
        etag = f'"{marker or degraded_etag()}"'
        return Update(etag, json.dumps(counts_body(self.user_id, counts)))
