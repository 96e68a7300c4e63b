"""Stream tickets: what a browser shows instead of a token, which EventSource and WebSocket
cannot send in a header (and which, in a URL, would end up in logs and histories).

A ticket is 192 random bits, single use (taken from Redis with the same step that deletes it),
valid a few seconds, bound to one user's stream, and it carries the expiry and the signing key of
the token that asked for it: the stream still ends when that token expires or its key is
withdrawn from the identity provider's JWKS.
"""

import json
import secrets
import time
from uuid import UUID

import redis

from counts.errors import Forbidden, Unauthorized
from counts.identity import Principal
from counts.markers import keys

MAX_TICKET_CHARS = 64


def issue(client: redis.Redis, user_id: str, principal: Principal, ttl: int) -> str:
    """A new ticket to `user_id`'s streams for `principal` (that user, or a service)."""
    ticket = secrets.token_urlsafe(24)
    user_text = None if principal.user_id is None else str(principal.user_id)
    value = json.dumps([user_id, principal.role, user_text, principal.expires_at,
                        principal.key_id])
    client.set(keys.ticket_key(ticket), value, ex=ttl)
    return ticket


def redeem(client: redis.Redis, ticket: str, user_id: str) -> Principal:
    """The principal a ticket stands for on `user_id`'s stream, using the ticket up.

    401 when it is unknown, expired, used or its token expired; 403 when it was issued for
    another user's stream. RedisError propagates (the caller answers 503).
    """
    if not ticket or len(ticket) > MAX_TICKET_CHARS:
        raise Unauthorized("The ticket is not valid; ask for a new one.")
    value = client.getdel(keys.ticket_key(ticket))  # taken and deleted in one step: single use
    if value is None:
        raise Unauthorized("The ticket is unknown, expired or already used; ask for a new one.")
    # A ticket issued by a worker of the previous release (a rolling deploy) has no key id.
    for_user, role, principal_user, expires_at, *key_id = json.loads(value)
    if for_user != user_id.lower():
        raise Forbidden("This ticket is for another user's stream.")
    if expires_at <= time.time():
        raise Unauthorized("The token this ticket was issued for has expired.")
    return Principal(role=role, user_id=UUID(principal_user) if principal_user else None,
                     expires_at=expires_at, key_id=key_id[0] if key_id else None)
