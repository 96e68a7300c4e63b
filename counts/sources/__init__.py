"""Where counts come from, chosen once from COUNTS_SOURCE.

- `own.py`: our own schema (conversations, members, messages) and write API.
- `attached.py`: the app's own tables, through the unread function it names
  (COUNTS_UNREAD_FUNCTION); its triggers call counts.bump() and the relay (counts.bumps.relay) moves
  the markers.

The read path asks the source, never the mode: `source.unread_counts(cur, user_ids)` returns
each user's body (counts.representation.totals: totals, badge, threads, conversations) in both,
with the badge policy COUNTS_BADGE_POLICY for users who chose none.
"""

from collections.abc import Iterable
from typing import Protocol
from uuid import UUID

from counts.settings import Settings, SourceSettings


class Source(Protocol):
    """What the rest of the service needs to know about where counts come from."""

    name: str  # "own" or "attached": also the migrations track (counts.postgres.migrations)
    schema: str | None  # where our own tables live; None: the database's default (public)
    writable: bool  # whether our write endpoints change counts (own) or refuse (attached)
    relays_bumps: bool  # whether bumps arrive from SQL (counts.bump) for the LISTEN relay

    def unread_counts(self, cur, user_ids: Iterable[UUID]) -> dict[UUID, dict]:
        """Each user's counts, in the body's shape."""

    def problem(self, cur) -> str | None:
        """What stops this source from answering (checked once at start-up), or None."""


def from_settings(settings: SourceSettings) -> Source:
    """The source COUNTS_SOURCE names."""
    if settings.mode == "attached":
        from counts.sources.attached import AttachedSource

        assert settings.unread_function is not None
        return AttachedSource(settings.unread_function, settings.badge_policy)
    from counts.sources.own import OwnSource

    return OwnSource(settings.badge_policy, settings.mention_all_max_members)


def check_at_start(settings: Settings) -> str | None:
    """Refuse to start (RuntimeError, one clear sentence) when the source cannot answer.

    Called once per start by gunicorn's master (gunicorn.conf.py, on_starting), over a one-off
    connection closed at once: workers open their pools after fork. Returns a warning instead
    when Postgres cannot be reached: the service must still start and answer 304s from Redis
    (invariant 7), and the check runs again at the next start.
    """
    import psycopg2

    source = from_settings(settings.source)
    if source.name == "own":
        return None  # `db upgrade` made our tables; nothing of the app's to check
    timeout = settings.postgres.timeout
    try:
        conn = psycopg2.connect(
            settings.postgres.url, connect_timeout=max(1, round(timeout)),
            application_name="counts-check", options=f"-c statement_timeout={int(timeout * 1000)}")
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                problem = source.problem(cur)
        finally:
            conn.close()
    except psycopg2.OperationalError as error:
        return f"could not check COUNTS_SOURCE={source.name}: {str(error).strip()}"
    if problem is not None:
        raise RuntimeError(problem)
    return None
