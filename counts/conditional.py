"""The counts endpoint's conditional GET, answered in WSGI before Flask is entered.

Most polls end in a 304, and Flask's request machinery costs more than the Redis round trip that
decides it. This middleware makes the whole 304 decision (auth first, then marker, then
If-None-Match) and answers only a 304; anything else (no or bad token, other user, no match,
Redis down) falls through to the Flask view, which answers 200 or the error. The marker read
here is handed to the view, so a 200 still carries the marker read before its query
(DESIGN.md invariant 2) without a second Redis round trip.
"""

import logging
import re
from collections.abc import Callable, Iterable

import redis
from werkzeug.http import parse_etags

from counts import markers, metrics
from counts.errors import Problem
from counts.observe import ROUTE_KEY
from counts.schemas import uuid_text

log = logging.getLogger(__name__)

COUNTS_PATH = re.compile(r"/v1/users/([^/]+)/unread-counts")
COUNTS_ROUTE = "/v1/users/<user_id>/unread-counts"  # as Flask names the view's rule

# Where the middleware leaves the marker it read for the view: a str, or None if Redis failed.
MARKER_KEY = "counts.marker"
# ... and the WAL position a Postgres replica must have replayed to answer (None: the primary).
LSN_KEY = "counts.lsn"
# ... and the user's requests in the current rate window, counted in the same round trip.
REQUESTS_KEY = "counts.requests_in_window"

# RFC 9110 If-None-Match: "*" or a list of (possibly weak) quoted entity-tags. Werkzeug parses
# leniently (it takes unquoted tokens as tags); a malformed header must simply not match.
# Possessive quantifiers throughout: a nested optional in a repetition otherwise backtracks
# exponentially, and 51 bytes of ", , , x" held a worker for ten seconds.
_ENTITY_TAG = r'(?:W/)?+"[\x21\x23-\x7e\x80-\xff]*+"'
_IF_NONE_MATCH = re.compile(
    rf"\s*+(?:\*|(?:{_ENTITY_TAG})?+(?:\s*+,\s*+(?:{_ENTITY_TAG})?+)*+)\s*+")


def etag_matches(if_none_match: str | None, marker: str) -> bool:
    """Whether an If-None-Match value matches `marker` by weak comparison (malformed: no)."""
    if not if_none_match:
        return False
    if if_none_match == f'"{marker}"':
        return True  # what nearly every poll sends: our ETag, echoed as it was given
    if not _IF_NONE_MATCH.fullmatch(if_none_match):
        return False
    return parse_etags(if_none_match).contains_weak(marker)


def counts_headers(marker: str, poll_interval: str) -> list[tuple[str, str]]:
    """Headers every counts answer carries, 200 and 304 alike."""
    return [("ETag", f'"{marker}"'), ("Cache-Control", "private, no-cache"),
            ("Vary", "Authorization"), ("X-Poll-Interval", poll_interval)]


class ConditionalCounts:
    """WSGI middleware answering the counts endpoint's 304s; everything else goes to `app`."""

    def __init__(self, app: Callable, resources):
        self.app = app
        self.resources = resources

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        # Every counts GET comes through here, with or without If-None-Match: the marker (and the
        # rate count riding with it) is read in this one place, in one round trip.
        if environ["REQUEST_METHOD"] in ("GET", "HEAD"):
            found = COUNTS_PATH.fullmatch(environ.get("PATH_INFO", ""))
            if found is not None:
                environ[ROUTE_KEY] = COUNTS_ROUTE
                headers = self.not_modified(environ, found.group(1))
                if headers is not None:
                    start_response("304 Not Modified", headers)
                    return []
        return self.app(environ, start_response)

    def not_modified(self, environ: dict, user_id: str) -> list[tuple[str, str]] | None:
        """The 304's headers if this request may see the user's counts and its ETag is current."""
        res = self.resources
        try:
            principal = res.tokens.verify(environ.get("HTTP_AUTHORIZATION"))
            uid = uuid_text(user_id)
        except (Problem, ValueError):
            return None  # the view answers with the right 400/401
        if not principal.is_service and principal.user_text != uid:
            return None  # the view answers 403 (auth before conditionals: invariant 8)
        counted = not principal.is_service and res.rate_limit.per_user > 0
        try:
            found = markers.read(res.redis, uid, res.marker_ttl,
                                 res.rate_limit.window if counted else 0)
        except redis.RedisError as error:
            log.warning("redis failed, answering from Postgres: %r", error)
            metrics.redis_failed("read_marker")
            environ[MARKER_KEY] = environ[LSN_KEY] = None
            return None
        metrics.dependency_state("redis", available=True)
        marker = environ[MARKER_KEY] = found.token
        environ[LSN_KEY] = found.lsn
        if counted:
            environ[REQUESTS_KEY] = found.requests
            if found.requests > res.rate_limit.per_user:
                return None  # the view answers 429
        if not etag_matches(environ.get("HTTP_IF_NONE_MATCH"), marker):
            return None
        return counts_headers(marker, res.load.poll_interval())
