"""Reading markers as a test looks at them (the service itself reads them with the rate count,
or many at once: counts.markers.store)."""

from uuid import UUID

from counts import markers
from counts.settings import DEFAULT_MARKER_TTL


def read_marker(client, user_id: UUID | str, ttl: int = DEFAULT_MARKER_TTL) -> str:
    """The user's ETag token, the marker created (with its TTL) when missing."""
    return markers.read(client, user_id, ttl).token


def read_markers(client, user_ids, ttl: int = DEFAULT_MARKER_TTL) -> dict[str, str]:
    """Tokens for many users, markers created where missing: one round trip per server."""
    return markers.read_markers_and_lsns(client, user_ids, ttl)[0]
