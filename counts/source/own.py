"""COUNTS_SOURCE=own (the default): counts from our own schema, written through our write API."""

from collections.abc import Iterable
from uuid import UUID

from counts.queries import reads


class OwnSource:
    """Our tables in the database's default schema, as every deployment before attach had them."""

    name = "own"
    schema = None
    writable = True
    relays_bumps = False  # our writes bump before they return (counts.outbox.write_then_bump)

    def unread_counts(self, cur, user_ids: Iterable[UUID]) -> dict[UUID, dict]:
        """Each user's counts from conversation_members and conversations (queries.reads)."""
        return reads.unread_counts(cur, user_ids)

    def problem(self, cur) -> str | None:
        """Nothing to check: `db upgrade` made our tables."""
        return None
