"""What a user's counts look like, whichever way they travel (a poll's 200, a stream's event, a
batch entry), and the ETag they go under: the body, the ETag of a 200 served without Redis, and
the RFC 9110 If-None-Match comparison the 304s and the stream resumes decide with."""

import re
import secrets
from uuid import UUID

from werkzeug.http import parse_etags

# How a 200 served without Redis labels itself: it names no marker, so it can never match one.
DEGRADED_ETAG_PREFIX = "nomarker-"

# RFC 9110 If-None-Match: "*" or a list of (possibly weak) quoted entity-tags. Werkzeug parses
# leniently (it takes unquoted tokens as tags); a malformed header must simply not match.
# Possessive quantifiers throughout: a nested optional in a repetition otherwise backtracks
# exponentially, and 51 bytes of ", , , x" held a worker for ten seconds.
_ENTITY_TAG = r'(?:W/)?+"[\x21\x23-\x7e\x80-\xff]*+"'
_IF_NONE_MATCH = re.compile(
    rf"\s*+(?:\*|(?:{_ENTITY_TAG})?+(?:\s*+,\s*+(?:{_ENTITY_TAG})?+)*+)\s*+")


def counts_body(user_id: UUID, counts: dict) -> dict:
    """The JSON shape of one user's counts."""
    return {"user_id": str(user_id), **counts}


def degraded_etag() -> str:
    """An ETag token for a 200 served without Redis: new each time, never a marker's."""
    return DEGRADED_ETAG_PREFIX + secrets.token_urlsafe(12)


def etag_matches(if_none_match: str | None, marker: str) -> bool:
    """Whether an If-None-Match value matches `marker` by weak comparison (malformed: no)."""
    if not if_none_match:
        return False
    if if_none_match == f'"{marker}"':
        return True  # what nearly every poll sends: our ETag, echoed as it was given
    if not _IF_NONE_MATCH.fullmatch(if_none_match):
        return False
    return parse_etags(if_none_match).contains_weak(marker)
