"""Bumps that survive Redis outages and writer crashes: a transactional outbox in Postgres.

A write records the users to bump in its own transaction (so a commit without its bump is
impossible to forget), bumps them in Redis after commit (invariant 1), then deletes the record. If
Redis was unreachable, or the writer died in between, the record stays; `drain` bumps it once
Redis answers again, so no client stays on a stale 304 (invariant 6). On a Redis Cluster a bump
is one call per node: when some nodes took it and others did not, only the users the failed
nodes hold stay queued.

`wal` (counts.postgres.replicas.Postgres.wal: set when Postgres replicas answer reads) reads the primary's
WAL position; bumps record it beside the markers (invariant 11). Read after the commit, or by the
drainer after it found the committed rows, it is past the commit of every change being bumped.
"""

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar
from uuid import UUID

import redis
from psycopg2.extensions import cursor

from counts import markers
from counts.errors import DependencyUnavailable
from counts.markers import Wal
from counts.observability import metrics
from counts.postgres.pool import Database
from counts.postgres.queries import bumps
from counts.postgres.queries import push as push_sql
from counts.sources.own import Changes

log = logging.getLogger(__name__)

T = TypeVar("T")


def write_then_bump(db: Database, client: redis.Redis, ttl: int,
                    work: Callable[..., tuple[T, Changes]], *args: Any, wal: Wal = None) -> T:
    """Run `work(cur, *args) -> (result, changes)` in a transaction, then bump the changed users.

    The bumps and the push jobs are recorded in the write's own transaction (invariants 6 and 12).
    The bump is attempted before this returns, so a client polling right after the write sees it.
    """

    def work_and_enqueue(cur: cursor) -> tuple[T, list[UUID], int | None]:
        result, changes = work(cur, *args)
        user_ids = changes.bump
        outbox_id = bumps.enqueue_bumps(cur, user_ids) if user_ids else None
        if changes.alert or changes.badge:
            push_sql.enqueue_jobs(cur, changes.alert, changes.badge, changes.conversation_id)
        return result, user_ids, outbox_id

    result, user_ids, outbox_id = db.run(work_and_enqueue)
    if outbox_id is not None:
        bump_and_forget(db, client, ttl, [outbox_id], user_ids, wal, time.time())
    return result


def bump_and_forget(db: Database, client: redis.Redis, ttl: int, outbox_ids: list[int],
                    user_ids: list[UUID], wal: Wal = None, written_at: float | None = None) -> bool:
    """Bump changes committed at `written_at` and delete their outbox rows (keeping the users a
    failed Redis node holds); False if some users were not bumped."""
    failed = []
    try:
        markers.bump(client, user_ids, ttl, wal, written_at)
    except markers.PartialBump as partial:
        log.warning("bump of %d users deferred to the outbox: %r", len(partial.failed),
                    partial.cause)
        metrics.redis_failed("bump")
        failed = partial.failed
    except (redis.RedisError, DependencyUnavailable) as error:
        # DependencyUnavailable: no WAL position to record, so no bump until the drainer's.
        log.warning("bump of %d users deferred to the outbox: %r", len(user_ids), error)
        metrics.redis_failed("bump")
        return False
    try:
        db.run(bumps.requeue_bumps, outbox_ids, failed)
    except DependencyUnavailable:
        # Some bumps landed; the drainer will bump these users once more, which costs one 200.
        log.warning("outbox rows %s outlive their bump", outbox_ids)
    return not failed


def enqueue(db: Database, user_ids: list[UUID] | list[str]) -> int:
    """Queue bumps durably for the drainer (the bump API's answer when Redis is down)."""
    return db.run(bumps.enqueue_bumps, user_ids)


def drain(db: Database, client: redis.Redis, ttl: int, min_age_seconds: float = 0.0,
          batch_size: int = 500, wal: Wal = None) -> int:
    """Bump every outbox row older than `min_age_seconds`; how many users were bumped.

    `min_age_seconds` leaves a writer time to bump and forget its own rows. Stops at the first
    Redis error, leaving the rest queued (only the users of the failed nodes, on a Cluster).
    """
    total = 0
    while True:
        try:
            rows, bumped, stopped = db.run(bump_batch, client, ttl, min_age_seconds, batch_size, wal)
        except redis.RedisError as error:
            log.info("outbox drain waits for Redis: %s", error)
            return total
        total += bumped
        if stopped or rows < batch_size:
            return total


def bump_batch(cur: cursor, client: redis.Redis, ttl: int, min_age_seconds: float, batch_size: int,
               wal: Wal = None) -> tuple[int, int, bool]:
    """Take up to `batch_size` rows and bump their users in one round trip (per Redis node), before
    the caller commits; (rows, users bumped, whether a node failed). The one bump step of the
    drainer and the relay.

    SKIP LOCKED: several workers (and instances) drain at once, and none bumps a row twice. A
    Redis error raised here rolls back: the taken rows stay queued for the next drain. When only
    some Cluster nodes took the bump, the users of the others are queued again.
    """
    rows = bumps.take_bumps(cur, min_age_seconds, batch_size)
    if not rows:
        return 0, 0, False
    # The oldest row's write: a batch's latency is its slowest change's.
    written_at = min(created for _, _, created in rows)
    try:
        bumped = markers.bump(client, {uid for _, users, _ in rows for uid in users}, ttl, wal,
                              written_at)
    except markers.PartialBump as partial:
        bumps.enqueue_bumps(cur, partial.failed)
        return len(rows), partial.bumped, True
    return len(rows), bumped, False
