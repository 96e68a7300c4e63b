"""The marker outbox (invariant 6): bumps recorded in the write's transaction, drained later."""

from collections.abc import Iterable
from uuid import UUID

ENQUEUE_BUMPS = "INSERT INTO marker_outbox (user_ids) VALUES (%s::uuid[]) RETURNING id"

FORGET_BUMPS = "DELETE FROM marker_outbox WHERE id = ANY(%s)"

# SKIP LOCKED: several workers drain at once without waiting on, or double-taking, each other.
CLAIM_BUMPS = """
SELECT id, user_ids FROM marker_outbox
WHERE created_at <= now() - make_interval(secs => %s)
ORDER BY id LIMIT %s
FOR UPDATE SKIP LOCKED
"""

PENDING_BUMPS = "SELECT count(*) FROM marker_outbox"


def enqueue_bumps(cur, user_ids: Iterable[UUID]) -> int:
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


def claim_bumps(cur, min_age_seconds: float, limit: int) -> list[tuple[int, list[UUID]]]:
    """Lock up to `limit` outbox rows older than `min_age_seconds`, for this transaction."""
    cur.execute(CLAIM_BUMPS, (min_age_seconds, limit))
    return [(row_id, users) for row_id, users in cur.fetchall()]


def pending_bumps(cur) -> int:
    """How many outbox rows wait for Redis."""
    cur.execute(PENDING_BUMPS)
    return cur.fetchone()[0]
