"""A conditional poller for the counts API, for other Python services to import.

It keeps each user's ETag and counts, sends `If-None-Match`, and hands back the cached counts on a
304. Between polls it waits the larger of its own interval and the server's `X-Poll-Interval`. On
failure (connection error, timeout, 5xx, 429) it backs off exponentially with full jitter, capped,
and never retries sooner than a `Retry-After`: when the service comes back, its clients return
spread out instead of all at once (Zulip's client does the same). A success resets the backoff.

    client = CountsClient("http://counts.internal", token=lambda: mint_my_token())
    result = client.poll(user_id)          # one shot: PollResult, or raises CountsUnavailable
    client.run(user_id, on_change, stop)   # or a loop until `stop` (a threading.Event) is set
    client.stream(user_id, on_change, stop)  # live (SSE), falling back to polling when refused

`stream` follows the user's Server-Sent Events, resuming with the ETag it holds (Last-Event-ID:
nothing is resent if it is current). When streams are refused (503 at capacity, 404 or 426 from a
server without them) or cut, it polls conditionally instead and tries the stream again after the
wait the poll implies; the reconnect delay the server suggests (`retry:`, spread at shutdown) is
honoured.
"""

import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote
from uuid import UUID

import requests

log = logging.getLogger(__name__)

# Beyond this many failures the ceiling is the cap anyway; it keeps 2 ** n from overflowing a float.
MAX_BACKOFF_EXPONENT = 32
# Statuses that mean "no stream here now", not "you may not": poll instead, then try again.
STREAM_REFUSED = frozenset({404, 405, 426, 501})


@dataclass(frozen=True)
class PollResult:
    """One successful poll: the user's latest counts, and what to do next."""

    user_id: str
    counts: dict[str, Any]  # the 200's body, or on a 304 the body this client cached
    changed: bool  # the counts differ from the ones this client held (True on the first poll)
    status: int  # 200 or 304
    etag: str | None  # None when the server sent none (the next poll is then unconditional)
    wait: float  # seconds until the next poll

    @property
    def total(self) -> int:
        """Unread in top-level conversations the user hears everything of (notify `all`)."""
        return int(self.counts.get("total", 0))

    @property
    def badge(self) -> int:
        """The app icon's number, under the user's badge policy, as every push carries it (a
        server from before badges sends none: its total was the badge)."""
        return int(self.counts.get("badge", self.total))

    @property
    def mentions(self) -> int:
        """Unread mentions of the user in conversations not muted entirely."""
        return int(self.counts.get("mentions", 0))


class CountsError(Exception):
    """The service refused the poll (4xx other than 429): retrying the same request will not help."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class CountsUnavailable(CountsError):
    """The poll failed in a way that may pass (connection error, timeout, 5xx, 429)."""

    def __init__(self, message: str, wait: float, status: int | None = None,
                 retry_after: float | None = None):
        super().__init__(message, status)
        self.wait = wait  # seconds to back off before the next try
        self.retry_after = retry_after  # what the server asked for, if it did


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a Retry-After (delta-seconds or HTTP-date); None if absent or malformed."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; parsedate returns naive for "-0000"
        return None
    return max(0.0, when.timestamp() - now)


def parse_poll_interval(value: str | None) -> float | None:
    """Seconds from an X-Poll-Interval; None if absent or malformed (then our own interval rules)."""
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds < float("inf") else None


class CountsClient:
    """Polls users' unread counts conditionally; one instance may serve many users."""

    def __init__(self, base_url: str, token: str | Callable[[], str], *,
                 session: requests.Session | None = None, interval: float = 30.0,
                 timeout: float = 10.0, backoff_base: float = 1.0, backoff_cap: float = 60.0,
                 rng: random.Random | None = None, clock: Callable[[], float] = time.time,
                 stream_timeout: float = 45.0):
        """`token` is a bearer token, or a callable asked before each request (so it may refresh)."""
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._own_session = session is None
        self.session = session if session is not None else requests.Session()
        self.interval = interval
        self.timeout = timeout
        # The default cap is about twice the default interval: through a long outage clients poll no
        # more often on average than when all is well, and return within one interval of recovery.
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.rng = rng if rng is not None else random.Random()
        self.clock = clock
        # A stream silent this long (three of the server's 15-s heartbeats) is dead: reconnect.
        self.stream_timeout = stream_timeout
        self.failures = 0  # consecutive failures: the service's health, shared by every user polled
        self._cache: dict[str, tuple[str | None, dict[str, Any]]] = {}  # user -> (ETag, counts)
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the HTTP session, if this client made it."""
        if self._own_session:
            self.session.close()

    def __enter__(self) -> "CountsClient":
        """Use as a context manager: the session is closed on exit."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close the session (see close)."""
        self.close()

    def cached(self, user_id: UUID | str) -> tuple[str | None, dict[str, Any]] | None:
        """The (ETag, counts) this client holds for a user, if any."""
        return self._cache.get(str(user_id))

    def forget(self, user_id: UUID | str) -> None:
        """Drop a user's ETag and counts (the next poll is unconditional): e.g. on sign-out."""
        self._cache.pop(str(user_id), None)

    def backoff(self) -> float:
        """A full-jitter delay for the current failure count: uniform in [0, min(cap, base * 2**n))."""
        exponent = min(max(self.failures - 1, 0), MAX_BACKOFF_EXPONENT)
        return self.rng.uniform(0, min(self.backoff_cap, self.backoff_base * 2 ** exponent))

    def poll(self, user_id: UUID | str) -> PollResult:
        """Poll once: a PollResult on 200/304, CountsUnavailable to back off, CountsError to give up."""
        uid = str(user_id)
        token = self._token() if callable(self._token) else self._token
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        cached = self._cache.get(uid)
        if cached is not None and cached[0]:
            headers["If-None-Match"] = cached[0]
        url = f"{self.base_url}/v1/users/{quote(uid, safe='')}/unread-counts"
        try:
            response = self.session.get(url, headers=headers, timeout=self.timeout)
        except requests.RequestException as error:  # refused, reset, timed out, bad response
            raise self._failed(f"counts unreachable: {error}") from error
        with response:
            return self._handle(uid, response, cached)

    def _handle(self, uid: str, response: requests.Response,
                cached: tuple[str | None, dict[str, Any]] | None) -> PollResult:
        """Turn one response into a PollResult, or raise."""
        status = response.status_code
        if status == 429 or status >= 500:
            retry_after = parse_retry_after(response.headers.get("Retry-After"), self.clock())
            raise self._failed(f"counts answered {status}", status, retry_after)
        if status == 304 and cached is not None and cached[0]:
            etag: str | None = response.headers.get("ETag") or cached[0]
            counts = cached[1]
            changed = False
        elif status == 200:
            try:
                counts = response.json()
            except ValueError as error:  # a proxy's HTML error page, say: the service may recover
                raise self._failed(f"counts answered 200 with a body that is not JSON: {error}",
                                   status) from error
            etag = response.headers.get("ETag")
            changed = cached is None or cached[1] != counts
        else:  # 4xx (or a 304 we did not ask for): retrying will not fix it
            raise CountsError(f"counts answered {status}: {response.text[:200]}", status)
        with self._lock:
            # Without an ETag the next poll is unconditional, but the counts still tell a change.
            self._cache[uid] = (etag or None, counts)
            self.failures = 0
        server = parse_poll_interval(response.headers.get("X-Poll-Interval"))
        wait = max(self.interval, server) if server is not None else self.interval
        return PollResult(uid, counts, changed, status, etag or None, wait)

    def _failed(self, message: str, status: int | None = None,
                retry_after: float | None = None) -> CountsUnavailable:
        """Count a failure and say how long to back off."""
        with self._lock:
            self.failures += 1
            jitter = self.backoff()
        # Retry-After is a floor, not a meeting time: jitter on top keeps clients that were all told
        # the same number of seconds from returning in the same instant.
        wait = retry_after + jitter if retry_after is not None else jitter
        return CountsUnavailable(message, wait, status, retry_after)

    def run(self, user_id: UUID | str, on_change: Callable[[PollResult], object],
            stop: threading.Event, sleep: Callable[[float], object] | None = None) -> None:
        """Poll until `stop` is set, calling `on_change` whenever the counts change."""
        # stop.wait, so that setting `stop` ends a wait at once; tests pass a recorder instead.
        sleep = sleep if sleep is not None else stop.wait
        while not stop.is_set():
            try:
                result = self.poll(user_id)
            # A CountsError (401, 403, 404...) propagates and ends the loop, as does an exception
            # from on_change: retrying would only repeat them, every interval, unseen.
            except CountsUnavailable as error:
                log.warning("%s; retrying in %.1fs", error, error.wait)
                wait = error.wait
            else:
                if result.changed:
                    on_change(result)
                wait = result.wait
            if not stop.is_set():
                sleep(wait)

    def stream(self, user_id: UUID | str, on_change: Callable[[PollResult], object],
               stop: threading.Event, sleep: Callable[[float], object] | None = None) -> None:
        """Follow the user's counts live (SSE) until `stop` is set, polling while refused."""
        sleep = sleep if sleep is not None else stop.wait
        uid = str(user_id)
        while not stop.is_set():
            try:
                wait = self._follow(uid, on_change, stop)
            except CountsUnavailable as refused:
                log.info("%s; polling instead", refused)
                try:
                    result = self.poll(uid)
                except CountsUnavailable as error:
                    wait = max(error.wait, refused.wait)
                else:
                    if result.changed:
                        on_change(result)
                    wait = max(result.wait, refused.retry_after or 0)
            if not stop.is_set():
                sleep(wait)

    def _follow(self, uid: str, on_change: Callable[[PollResult], object],
                stop: threading.Event) -> float:
        """One SSE connection until it ends; the reconnect delay it suggested (`retry:`).

        Raises CountsUnavailable when the stream is refused or cut, CountsError on 401/403.
        """
        token = self._token() if callable(self._token) else self._token
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        cached = self._cache.get(uid)
        if cached is not None and cached[0]:
            headers["Last-Event-ID"] = cached[0]
        url = f"{self.base_url}/v1/users/{quote(uid, safe='')}/unread-counts/stream"
        retry = self.rng.uniform(0, 1)
        try:
            with self.session.get(url, headers=headers, stream=True,
                                  timeout=(self.timeout, self.stream_timeout)) as response:
                if response.status_code != 200:
                    self._refused(response)
                fields: dict[str, str] = {}
                for line in response.iter_lines(chunk_size=None, decode_unicode=True):
                    if stop.is_set():
                        break
                    if line:
                        name, _, value = line.partition(":")
                        fields[name] = value.removeprefix(" ")
                    elif fields.get("event") == "counts":
                        self._received(uid, fields, on_change)
                    if fields.get("retry", "").isdigit():
                        retry = int(fields.pop("retry")) / 1000
                    if not line:
                        fields = {}
        except (requests.RequestException, ValueError) as error:  # cut, timed out, not JSON
            raise self._failed(f"the counts stream broke: {error}") from error
        return retry

    def _refused(self, response: requests.Response) -> None:
        """Raise for a stream that was not opened: to poll instead, or to give up (401, 403)."""
        status = response.status_code
        if status in STREAM_REFUSED or status == 429 or status >= 500:
            retry_after = parse_retry_after(response.headers.get("Retry-After"), self.clock())
            raise self._failed(f"the counts stream was refused ({status})", status, retry_after)
        raise CountsError(f"counts answered {status}: {response.text[:200]}", status)

    def _received(self, uid: str, fields: dict[str, str],
                  on_change: Callable[[PollResult], object]) -> None:
        """One `counts` event: keep it like a 200, and tell `on_change` if the counts changed."""
        counts, etag = json.loads(fields["data"]), fields.get("id") or None
        with self._lock:
            cached = self._cache.get(uid)
            self._cache[uid] = (etag, counts)
            self.failures = 0
        if cached is None or cached[1] != counts:
            on_change(PollResult(uid, counts, True, 200, etag, 0.0))
