"""What a user's counts look like, whichever way they travel (a poll's 200, a stream's event, a
batch entry, a push's badge), and the ETag they go under: the body with its totals and badge, the
ETag of a 200 served without Redis, and the RFC 9110 If-None-Match comparison the 304s and the
stream resumes decide with."""

import re
import secrets
from uuid import UUID

from werkzeug.http import parse_etags

# The body's shape, folded into every ETag (counts.markers.scripts): when what a 200 carries
# changes, every ETag minted before must miss once (docs/DESIGN.md invariant 15). Change it with
# the shape. 2: mentions, notify levels, marked_unread, threads and the badge (issue 19).
BODY_VERSION = "2"

# Notify levels of a membership: what it adds to totals, the badge and alerts.
LEVELS = ("all", "mentions", "none")

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


def contribution(entry: dict) -> int:
    """What one conversation adds to a `messages` badge: its unread at `all`, its mentions at
    `mentions`, nothing at `none`; a conversation marked unread at least 1 unless at `none`."""
    level = entry["notify"]
    if level == "none":
        return 0
    added = entry["unread"] if level == "all" else entry["mentions"]
    return max(added, 1) if entry["marked_unread"] else added


def badge_measures(entry: dict | None) -> tuple[int, int]:
    """What a conversation adds to the badge under each policy that counts (messages, mentions;
    `conversations` follows from messages): a write queues a badge push when these changed."""
    if entry is None:
        return 0, 0
    return contribution(entry), 0 if entry["notify"] == "none" else entry["mentions"]


def totals(conversations: list[dict], policy: str) -> dict:
    """A user's body without its user_id: totals apply the levels, the entries are the truth.

    `total` and `unread_conversations` cover top-level conversations at `all` (with no levels,
    marks, threads or mentions they are the numbers before issue 19); `mentions` every
    conversation not at `none`; `threads` the threads not at `none`; `badge` follows `policy`.
    """
    total = unread_conversations = mentions = badge = 0
    threads = {"unread": 0, "unread_threads": 0, "mentions": 0}
    for entry in conversations:
        level = entry["notify"]
        if level != "none":
            mentions += entry["mentions"]
            if entry["parent_id"] is not None:
                threads["unread"] += entry["unread"]
                threads["unread_threads"] += entry["unread"] > 0
                threads["mentions"] += entry["mentions"]
        if level == "all" and entry["parent_id"] is None:
            total += entry["unread"]
            unread_conversations += entry["unread"] > 0 or entry["marked_unread"]
        added = contribution(entry)
        if policy == "messages":
            badge += added
        elif policy == "conversations":
            badge += added > 0
        elif policy == "mentions" and level != "none":
            badge += entry["mentions"]
    return {"total": total, "unread_conversations": unread_conversations, "mentions": mentions,
            "badge": badge, "threads": threads, "conversations": conversations}


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
