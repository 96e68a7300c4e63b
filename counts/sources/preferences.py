"""A user's own choices that change what their counts show, in either mode: the badge policy.

Kept in our schema (`user_settings`: public in own mode, counts when attached), so an attached
app has nothing to add for them; the counts query reads them in the same statement.
"""

from collections.abc import Callable
from uuid import UUID

from counts.postgres.queries import members
from counts.sources.own import Changes

CountsOf = Callable[..., dict[UUID, dict]]  # a source's unread_counts(cur, user_ids)


def set_badge_policy(cur, user_id: UUID, policy: str | None,
                     counts_of: CountsOf) -> tuple[dict, Changes]:
    """A user's badge policy (None: COUNTS_BADGE_POLICY again), read back by `counts_of` (the
    source's counts) before and after: bumped only if their body changed, and pushed only if
    their badge did (invariant 14). Choosing the server's own policy by name changes nothing."""
    members.badge_policy(cur, user_id)  # locks the user's row: two choices do not interleave
    before = counts_of(cur, [user_id])[user_id]
    members.set_badge_policy(cur, user_id, policy)
    after = counts_of(cur, [user_id])[user_id]
    if after == before:
        return {"badge_policy": policy}, Changes()
    badge = [user_id] if after["badge"] != before["badge"] else []
    return {"badge_policy": policy}, Changes([user_id], badge=badge)
