"""The marker outbox (invariant 6): bumps recorded in the write's transaction, drained later;
and, in attached mode, the notifications counts.bump() sends when it records one."""

from collections.abc import Iterable
from uuid import UUID

ENQUEUE_BUMPS = "INSERT INTO marker_outbox (user_ids) VALUES (%s::uuid[]) RETURNING id"

FORGET_BUMPS = "DELETE FROM marker_outbox WHERE id = ANY(%s)"

# SKIP LOCKED: several workers drain at once without waiting on, or double-taking, each other.
# Deleted as they are taken: the caller bumps them before committing, and a failed bump rolls
# the delete back.
TAKE_BUMPS = """
DELETE FROM marker_outbox WHERE id IN (
    SELECT id FROM marker_outbox
    WHERE created_at <= now() - make_interval(secs => %s)
    ORDER BY id LIMIT %s
    FOR UPDATE SKIP LOCKED
)
RETURNING id, user_ids, extract(epoch FROM created_at)::float8
"""

PENDING_BUMPS = "SELECT count(*) FROM marker_outbox"

# The channel counts.bump() notifies (migrations/attached/0002_counts_bump.sql).
BUMPS_CHANNEL = "counts_bumps"


def enqueue_bumps(cur, user_ids: Iterable[UUID | str]) -> int:
    """Record, in the caller's transaction, users whose markers must be bumped after commit."""
    cur.execute(ENQUEUE_BUMPS, ([str(uid) for uid in user_ids],))
    return cur.fetchone()[0]


def forget_bumps(cur, outbox_ids: list[int]) -> None:
    """Delete outbox rows whose bumps reached Redis."""
    cur.execute(FORGET_BUMPS, (outbox_ids,))


def requeue_bumps(cur, outbox_ids: list[int], failed: list[UUID | str]) -> None:
    """Delete outbox rows whose bumps reached Redis, queueing again only the users that did not
    (a Cluster node that failed), in the caller's transaction."""
    forget_bumps(cur, outbox_ids)
    if failed:
        enqueue_bumps(cur, failed)


def take_bumps(cur, min_age_seconds: float, limit: int) -> list[tuple[int, list[UUID], float]]:
    """Delete up to `limit` outbox rows older than `min_age_seconds`, nobody else's in this
    instant, and return them (id, users, when their write's transaction began, in Unix seconds):
    gone once this transaction commits, back if it rolls back."""
    cur.execute(TAKE_BUMPS, (min_age_seconds, limit))
    return [(row_id, users, created) for row_id, users, created in cur.fetchall()]


def pending_bumps(cur) -> int:
    """How many outbox rows wait for Redis."""
    cur.execute(PENDING_BUMPS)
    return cur.fetchone()[0]

