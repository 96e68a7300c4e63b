"""Every key and channel counts keeps in Redis, built here and nowhere else.

Each is hash-tagged with its subject (`counts:{<user_id>}:...`), so that on a Redis Cluster a
user's keys and channel share one slot: one server holds them, one script touches them.
"""

from uuid import UUID


def marker_key(user_id: UUID | str) -> str:
    """A user's marker (with its LSN record, and a live feed's listen flag): what every ETag of
    theirs is made of."""
    return f"counts:{{{user_id}}}:marker"


def rate_key(subject: str) -> str:
    """The request counter of a rate-limited subject: a user's UUID, or "ip:<address>"."""
    return f"counts:{{{subject}}}:rate"


def feed_channel(user_id: UUID | str) -> str:
    """The pub/sub channel a bump publishes a user's new marker on: on a Cluster a sharded
    channel in the user's slot, with their marker. (The bump script builds it from the marker
    key, swapping the last segment: keep the two in step.)"""
    return f"counts:{{{user_id}}}:feed"


def channel_user(channel: bytes | str) -> str:
    """The user a feed channel belongs to (the inverse of feed_channel)."""
    if isinstance(channel, bytes):
        channel = channel.decode()
    return channel[channel.index("{") + 1:channel.rindex("}")]


def ticket_key(ticket: str) -> str:
    """A stream ticket: who it lets in, until when (its own slot: it is looked up by itself)."""
    return f"counts:{{ticket:{ticket}}}"


def presence_key(user_id: UUID | str) -> str:
    """The workers holding a live (SSE or WebSocket) connection of the user, scored by expiry."""
    return f"counts:{{{user_id}}}:live"


def send_rate_key(provider: str) -> str:
    """A push provider's sends reserved in the last second, shared by every dispatcher (its own
    slot: not a user's)."""
    return f"counts:{{push-rate:{provider}}}"


def send_rate_sequence_key(provider: str) -> str:
    """The counter that makes each reservation of a provider's sends unique (beside them)."""
    return f"counts:{{push-rate:{provider}}}:seq"
