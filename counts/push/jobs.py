"""What a count-changing write records for push, in its own transaction (DESIGN.md invariant 12)."""

from collections.abc import Iterable
from uuid import UUID

from counts.queries import push as push_sql


def enqueue(cur, alert: Iterable[UUID], badge: Iterable[UUID], conversation_id: UUID | None) -> int:
    """Queue a push for each of these users who has a device: `alert` for a new message, `badge`
    for a changed total (through push(), as attached mode's triggers do). The dispatchers are
    woken when the transaction commits; a job of a transaction that rolls back never existed.
    How many were queued."""
    return push_sql.enqueue_jobs(cur, alert, badge, conversation_id)
