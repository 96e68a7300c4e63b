"""The fast path: the counts endpoint's conditional GET, answered in WSGI before Flask.

Most polls end in a 304, and Flask's request machinery costs more than the Redis round trip that
decides it. This middleware makes the whole 304 decision (auth first, then marker, then
If-None-Match) and answers only a 304; anything else (no or bad token, other user, no match,
Redis down) falls through to the Flask view, which answers 200 or the error. Who is calling is
decided once (counts.http.auth: the view reads the same answer), and the marker read here goes
to the view as a PollState, so a 200 still carries the marker read before its query
(DESIGN.md invariant 2) without a second Redis round trip.

It is also the long-poll (RFC 7240 `Prefer: wait=N`): a request whose ETag matches is held on
the worker's change feed until the marker moves (then the view answers 200 with the new marker,
read before its query) or N seconds pass (then 304, after one more read: invariant 10).
"""

import logging
import re
import time
from collections.abc import Callable, Iterable

import redis

from counts import markers
from counts.errors import Problem
from counts.http.auth import POLL_KEY, PollState, identified
from counts.http.middleware.observe import ROUTE_KEY
from counts.http.schemas import uuid_text
from counts.identity import Principal
from counts.observability import metrics
from counts.representation import DEGRADED_ETAG_PREFIX, etag_matches

log = logging.getLogger(__name__)

COUNTS_PATH = re.compile(r"/v1/users/([^/]+)/unread-counts")
COUNTS_ROUTE = "/v1/users/<user_id>/unread-counts"  # as Flask names the view's rule
# A poll's (False) and a long-poll's (True) counters, bound once: labels() costs ~3 us a call,
# half a percent of the 304 path each.
COUNTED = {prefers: (metrics.DEVICE_REQUESTS.labels(transport), metrics.WAKEUPS.labels(transport))
           for prefers, transport in ((False, "polling"), (True, "long_poll"))}

# RFC 7240 preferences: token [= word] *( ";" parameter ), comma-separated.
_WAIT = re.compile(r'\s*wait\s*=\s*(?:"(\d{1,9})"|(\d{1,9}))\s*(?:;.*)?', re.IGNORECASE | re.DOTALL)

def requested_wait(prefer: str | None, cap: int) -> int | None:
    """Seconds a `Prefer` header asks to wait (RFC 7240 `wait=N`, the first one), capped at
    `cap`; None when it asks for none or is malformed (a malformed preference is ignored)."""
    if not prefer or len(prefer) > 1024:
        return None
    for preference in prefer.split(","):
        if preference.strip().lower().startswith("wait"):
            found = _WAIT.fullmatch(preference)
            if found is None:
                return None
            return min(int(found.group(1) or found.group(2)), cap)
    return None


def counts_headers(marker: str, poll_interval: str) -> list[tuple[str, str]]:
    """Headers every counts answer carries, 200 and 304 alike."""
    return [("ETag", f'"{marker}"'), ("Cache-Control", "private, no-cache"),
            ("Vary", "Authorization"), ("X-Poll-Interval", poll_interval)]


def allowed_user(principal: Principal, user_id: str) -> str | None:
    """The user id's canonical text if the caller may see that user's counts, else None."""
    try:
        uid = uuid_text(user_id)
    except ValueError:
        return None
    return uid if principal.is_service or principal.user_text == uid else None


class FastPath:
    """WSGI middleware answering the counts endpoint's 304s and long-polls; the rest goes on."""

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
                # Each answer to a poll or a long-poll is a request and a wake-up of its device.
                for counter in COUNTED[bool(environ.get("HTTP_PREFER"))]:
                    counter.inc()
                headers = self.not_modified(environ, found.group(1))
                if headers is not None and environ.get("HTTP_PREFER"):
                    headers = self.long_poll(environ, found.group(1).lower(), headers)
                if headers is not None:
                    start_response("304 Not Modified", headers)
                    return []
        return self.app(environ, start_response)

    def not_modified(self, environ: dict, user_id: str) -> list[tuple[str, str]] | None:
        """The 304's headers if this request may see the user's counts and its ETag is current."""
        res = self.resources
        principal = identified(environ, res)
        if isinstance(principal, Problem):
            return None  # the view answers with it (auth before conditionals: invariant 8)
        uid = allowed_user(principal, user_id)
        if uid is None:
            return None  # the view answers 400 or 403
        counted = not principal.is_service and res.rate_limit.per_user > 0
        try:
            found = markers.read(res.redis, uid, res.marker_ttl,
                                 res.rate_limit.window if counted else 0)
        except redis.RedisError as error:
            log.warning("redis failed, answering from Postgres: %r", error)
            metrics.redis_failed("read_marker")
            environ[POLL_KEY] = PollState(None, None, 0, self.pace_degraded_long_poll(environ))
            return None
        metrics.dependency_state("redis", available=True)
        environ[POLL_KEY] = PollState(found.token, found.lsn, found.requests)
        if counted and found.requests > res.rate_limit.per_user:
            return None  # the view answers 429
        if not etag_matches(environ.get("HTTP_IF_NONE_MATCH"), found.token):
            return None
        return counts_headers(found.token, res.load.poll_interval())

    def pace_degraded_long_poll(self, environ: dict) -> str | None:
        """Redis is down and a long-poll comes back with the ETag of a 200 served without it: wait
        the poll interval (at most its wait) before answering again from Postgres; the
        Preference-Applied of that wait, if it waited. Without this, a long-poller re-asks the
        moment its 200 arrives, and a Redis outage becomes a loop of Postgres queries per
        client."""
        degraded = f'"{DEGRADED_ETAG_PREFIX}' in environ.get("HTTP_IF_NONE_MATCH", "")
        if not (environ.get("HTTP_PREFER") and degraded):
            return None
        wait = requested_wait(environ["HTTP_PREFER"], self.resources.settings.live.max_wait)
        if not wait:
            return None
        with self.resources.load.waiting():
            time.sleep(min(wait, int(self.resources.load.poll_interval())))
        return f"wait={wait}"

    def long_poll(self, environ: dict, uid: str,
                  headers: list[tuple[str, str]]) -> list[tuple[str, str]] | None:
        """Hold a matching request that prefers to wait: the 304's headers once the wait is over
        with nothing new, or None (with the new marker for the view) if the marker moved."""
        res = self.resources
        wait = requested_wait(environ["HTTP_PREFER"], res.settings.live.max_wait)
        if not wait or res.feed.full:  # at capacity: answered at once, as a plain poll
            return headers
        applied = f"wait={wait}"
        poll = environ[POLL_KEY]
        if_none_match = environ.get("HTTP_IF_NONE_MATCH")
        try:
            with res.load.waiting():
                found, changed = res.feed.hold(
                    uid, poll.marker, wait, lambda m: etag_matches(if_none_match, m))
        except redis.RedisError as error:
            log.warning("redis failed at a long-poll's end, answering from Postgres: %r", error)
            metrics.redis_failed("read_marker")
            environ[POLL_KEY] = PollState(None, None, poll.requests, applied)
            return None
        # The view's 200 is labelled with it, read before its query, and asks a replica only if
        # it has replayed the position read with it (invariant 11).
        environ[POLL_KEY] = PollState(found.token, found.lsn, poll.requests, applied)
        if changed:
            return None
        return [*counts_headers(found.token, res.load.poll_interval()),
                ("Preference-Applied", applied)]
