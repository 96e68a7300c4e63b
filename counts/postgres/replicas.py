"""Postgres as a primary and its read replicas: "a database that has seen LSN x".

A 200 may be served by a replica only if that replica has replayed the WAL position recorded
beside the user's marker (DESIGN.md invariant 11): otherwise its counts could be older than the
marker that labels them, and the client would keep them until the next bump. The check runs on the
connection that then runs the query, before it, so the query's snapshot is at least that recent.
Writes, the outbox and every read without a trusted position go to the primary.
"""

import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import TypeVar, cast
from urllib.parse import urlsplit

import psycopg2

from counts.errors import DependencyUnavailable
from counts.observability import metrics
from counts.postgres.pool import Database
from counts.postgres.queries import replication

log = logging.getLogger(__name__)

T = TypeVar("T")

# A replica that failed is left alone this long: a dead one must not cost every 200 a timeout.
REPLICA_BACKOFF_SECONDS = 5.0

_LAGGING, _NOT_A_REPLICA = object(), object()


class Replica:
    """One read replica: its pool, and until when it is left alone after a failure."""

    def __init__(self, url: str, timeout: float, pool_size: int, schema: str | None = None):
        self.db = Database(url, timeout, pool_size, schema=schema)
        parts = urlsplit(url)
        self.name = f"{parts.hostname}:{parts.port or 5432}"  # never the URL: it may hold a password
        self.down_until = 0.0


def _if_replayed(cur, position: int, work: Callable[..., T], *args) -> T | object:
    """`work(cur, *args)` if this server has replayed `position`, else a marker saying why not.

    A connection remembers the position it last saw replayed: a replica never replays backwards,
    so a user whose position is older needs no check (and no round trip).
    """
    conn = cur.connection
    if getattr(conn, "replayed", -1) < position:
        replayed = replication.replayed_position(cur)
        if replayed is None:
            return _NOT_A_REPLICA
        conn.replayed = replayed
        if replayed < position:
            return _LAGGING
    return work(cur, *args)


class Postgres:
    """The primary (every write, and reads nobody else may answer) and its read replicas."""

    def __init__(self, primary: Database, replica_urls: Sequence[str], timeout: float,
                 pool_size: int, schema: str | None = None):
        self.primary = primary
        self.replicas = [Replica(url, timeout, pool_size, schema) for url in replica_urls]

    @property
    def wal(self) -> Callable[[], int] | None:
        """What bumps record beside markers: the primary's WAL position, when replicas need it."""
        return self.wal_position if self.replicas else None

    def wal_position(self) -> int:
        """The primary's WAL position now: after a commit, past it."""
        return self.primary.read(replication.wal_position)

    def read_seen(self, position: int | None, work: Callable[..., T], *args) -> T:
        """Run a read-only `work(cursor, *args)` on a database that has replayed `position`.

        A replica if the one picked has; else (no position, replica lagging or down) the primary.
        """
        if not self.replicas:
            return self.primary.read(work, *args)
        outcome, result = self._on_replica(position, work, args)
        metrics.REPLICA_READS.labels(outcome).inc()
        return cast(T, result) if outcome == "replica" else self.primary.read(work, *args)

    def _on_replica(self, position: int | None, work: Callable[..., T],
                    args: tuple) -> tuple[str, object]:
        """(outcome, result): "replica" and the result, or why the primary must answer."""
        if position is None:
            return "primary_no_lsn", None
        now = time.monotonic()
        up = [replica for replica in self.replicas if replica.down_until <= now]
        if not up:
            return "primary_replica_down", None
        replica = random.choice(up)
        try:
            result = replica.db.read(_if_replayed, position, work, *args)
        except (DependencyUnavailable, psycopg2.Error) as error:
            log.warning("replica %s failed, the primary answers: %s", replica.name,
                        str(error).strip())
            replica.down_until = now + REPLICA_BACKOFF_SECONDS
            return "primary_replica_down", None
        if result is _NOT_A_REPLICA:
            log.warning("%s is not in recovery: not used as a replica", replica.name)
            replica.down_until = now + REPLICA_BACKOFF_SECONDS
            return "primary_replica_down", None
        if result is _LAGGING:
            return "primary_lagging", None
        return "replica", result

    def replica_states(self) -> list[dict[str, str | int]]:
        """Each replica's state for /readyz: ok (with its lag in bytes), unavailable, or
        not_a_replica (promoted, or pointed at a primary)."""
        try:
            primary_at = self.wal_position() if self.replicas else None
        except DependencyUnavailable:
            primary_at = None
        states: list[dict[str, str | int]] = []
        for replica in self.replicas:
            try:
                replayed = replica.db.read(replication.replayed_position)
            except (DependencyUnavailable, psycopg2.Error):
                states.append({"name": replica.name, "state": "unavailable"})
                continue
            state: dict[str, str | int] = {
                "name": replica.name, "state": "ok" if replayed is not None else "not_a_replica"}
            if replayed is not None and primary_at is not None:
                state["lag_bytes"] = max(0, primary_at - replayed)
            states.append(state)
        return states

    def close(self) -> None:
        """Close the replicas' idle connections (the primary is closed by its owner)."""
        for replica in self.replicas:
            replica.db.close()
