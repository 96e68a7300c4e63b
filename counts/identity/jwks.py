"""The signing keys an identity provider publishes at its JWKS URL, as each worker process keeps them.

Verifying a token whose key is known never waits for the network: the keys live in a dict that a
fetch replaces whole, read without a lock. One refresher thread per worker process (started on
first use, so after gunicorn forked) makes every fetch: every COUNTS_JWKS_REFRESH seconds, every
30 s while the endpoint fails, and when a request asks. A failed fetch keeps the keys already
known, so a provider outage only delays rotation. A token naming an unknown `kid` asks for a fetch
and waits for it (a rotated key works without a restart), but only one such fetch a minute is
made: a flood of made-up kids costs the provider one request a minute per worker. A request waits
at most the fetch timeout, and once one has waited that long for a fetch the others do not wait
for it: a trickling endpoint must not hold a thread per request.

PyJWT does the HTTP (`PyJWKClient.fetch_data`: a timeout, http(s) only, no redirects) and parses
the keys (`PyJWKSet`). PyJWKClient's own cache is not used: its lookups hold one lock across the
fetch, it fetches on the request's thread whenever its cache expires, and once the cache has
expired an unreachable endpoint fails every lookup, known keys included.
"""

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from jwt import PyJWK, PyJWKClient, PyJWKSet, PyJWTError
from jwt.algorithms import has_crypto

from counts.errors import DependencyUnavailable
from counts.observability import metrics

log = logging.getLogger(__name__)

# Asymmetric algorithms only: a symmetric ("oct") key in a JWKS would be a shared secret published
# to the world. Each key verifies only the algorithm it is for (PyJWK pins it).
JWKS_ALGORITHMS = frozenset({"ES256", "ES384", "ES512", "RS256", "RS384", "RS512",
                             "PS256", "PS384", "PS512", "EdDSA"})
UNKNOWN_KID_INTERVAL = 60.0  # seconds between fetches that unknown kids may cause
RETRY_INTERVAL = 30.0  # seconds between refreshes while the endpoint fails
FETCH_TIMEOUT = 3.0  # seconds per socket operation of a fetch; the longest a request waits for one
# Some CDNs and WAFs refuse urllib's default User-Agent with a 403 (jpadilla/pyjwt#1121).
HEADERS = {"User-Agent": "counts (JWKS fetch)", "Accept": "application/json"}


def usable_keys(jwks: Any) -> dict[str, PyJWK]:
    """The keys of a JWKS document that may verify tokens, by kid; PyJWTError if there are none."""
    keys = {key.key_id: key for key in PyJWKSet.from_dict(jwks).keys
            if isinstance(key.key_id, str) and key.public_key_use in ("sig", None)
            and key.algorithm_name in JWKS_ALGORITHMS}
    if not keys:
        # Not an empty set to install: that would refuse every user at once. Keep the known keys.
        raise PyJWTError("the JWKS has no asymmetric signing key with a kid")
    return keys


class KeySet:
    """One provider's signing keys, fetched from `url` by a thread of their own.

    Only that thread touches the network, so fetches are single-flight by construction; a
    request that needs a fetch asks for one and waits at most `timeout` for the answer.
    """

    def __init__(self, url: str, refresh: float = 300.0, timeout: float = FETCH_TIMEOUT,
                 unknown_kid_interval: float = UNKNOWN_KID_INTERVAL, retry: float = RETRY_INTERVAL,
                 clock: Callable[[], float] = time.monotonic):
        if not has_crypto:
            raise RuntimeError("COUNTS_JWKS_URL needs the 'cryptography' package (requirements.txt)")
        self.url = url
        self.refresh = refresh
        self.timeout = timeout
        self.unknown_kid_interval = unknown_kid_interval
        self.retry = min(retry, refresh)
        self._clock = clock
        self._client = PyJWKClient(url, cache_jwk_set=False, timeout=timeout, headers=HEADERS)
        self._keys: dict[str, PyJWK] = {}  # replaced whole by a fetch, never changed in place
        self._withdrawn: frozenset[str] = frozenset()  # kids published once, and no longer
        self._ok = False  # the last fetch succeeded
        self._attempted_at = -math.inf
        self._unknown_kid_fetch_at = -math.inf
        # Guarded by _changed: requests ask (_wanted), the refresher answers (_attempts).
        self._changed = threading.Condition()
        self._attempts = 0  # fetches finished, successful or not
        self._wanted = False
        self._fetching = False
        self._given_up_on = -1  # the fetch (by attempt number) a request waited for in vain
        self._thread: threading.Thread | None = None
        self._stopped = False

    def publishes(self, kid: str) -> bool:
        """Whether `kid` was in the last JWKS fetched (the verified-token cache asks on each hit)."""
        return kid in self._keys

    def signing_key(self, kid: str) -> PyJWK | None:
        """The key published as `kid`, or None once a successful fetch made after this kid was
        asked for lacks it. An unknown kid waits for a fetch: the first one, one under way, or a
        new one if none was made for an unknown kid within the minute. DependencyUnavailable
        (with a Retry-After) when no such fetch answered, or none may be made yet: the kid may be
        a key published since, and a 401 would tell an app its session is bad."""
        key = self._keys.get(kid)
        if key is None and kid not in self._withdrawn:  # a withdrawn key's answer is known: 401
            answered = self._fetch_for(kid)
            key = self._keys.get(kid)
            if key is None and not (answered and self._ok):
                wait = self.unknown_kid_interval - (self._clock() - self._unknown_kid_fetch_at)
                raise DependencyUnavailable(
                    "The identity provider's signing keys could not be fetched for this token's "
                    "key; try again shortly.",
                    headers={"Retry-After": str(math.ceil(max(1.0, min(wait, self.retry))))})
        return key

    def status(self) -> str:
        """'ok'; 'stale' (the last fetch failed: the keys fetched before are in use); or
        'unavailable' (no keys at all: tokens signed by the provider cannot be verified)."""
        if self._attempts == 0:  # a fresh worker: wait for its first fetch
            self._fetch_for(None)
        if self._ok:
            return "ok"
        return "stale" if self._keys else "unavailable"

    def close(self) -> None:
        """Stop the refresher (worker exit, tests); lookups go on with the keys already known."""
        with self._changed:
            self._stopped = True
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout + 1)

    def _fetch_for(self, kid: str | None) -> bool:
        """Wait for a fetch that may bring `kid` (None: the first fetch only); False if none
        answered within the timeout, the fetch under way already outlasted a request's wait (a
        slow endpoint must not hold one thread per request), or none may be made for a new kid
        yet (at most one fetch a minute for unknown kids)."""
        with self._changed:
            if self._thread is None and not self._stopped:  # first use, in the worker process
                self._thread = threading.Thread(target=self._refresh_forever,
                                                name="counts-jwks-refresh", daemon=True)
                self._thread.start()
            if kid in self._keys:
                return True  # a fetch brought it while this request was on its way here
            if self._attempts and not (self._wanted or self._fetching):
                if kid is None:
                    return True  # the last answer stands
                if self._clock() - self._unknown_kid_fetch_at < self.unknown_kid_interval:
                    return False  # no fetch for this kid yet: it may have been published since
                self._unknown_kid_fetch_at = self._clock()
                self._wanted = True
                self._changed.notify_all()
            seen = self._attempts
            if self._given_up_on == seen:
                return False  # this fetch already outlasted one request's wait: no one else waits
            answered = self._changed.wait_for(lambda: self._attempts > seen, timeout=self.timeout)
            if not answered:
                self._given_up_on = seen
            return answered

    def _refresh_forever(self) -> None:
        """Fetch when asked, and when the keys are due (every `refresh` s, sooner after a
        failure), until closed."""
        while True:
            with self._changed:
                while not (self._stopped or self._wanted or self._clock() >= self._next_refresh()):
                    self._changed.wait(self._next_refresh() - self._clock())
                if self._stopped:
                    return
                self._wanted, self._fetching = False, True
            self._fetch()  # outside the lock: requests with known keys never wait for this
            with self._changed:
                self._fetching = False
                self._attempts += 1
                self._changed.notify_all()

    def _next_refresh(self) -> float:
        """When the next scheduled fetch is due."""
        return self._attempted_at + (self.refresh if self._ok else self.retry)

    def _fetch(self) -> None:
        """Fetch and install the set; on failure keep the keys known before."""
        try:
            keys = usable_keys(self._client.fetch_data())
        # Network, HTTP, JSON or key errors, or whatever else a broken document makes the parser
        # raise: none may kill the refresher or drop the keys already known.
        except Exception as error:  # noqa: BLE001
            self._ok = False
            log.warning("JWKS fetch failed, keeping %d known keys: %s", len(self._keys), error)
        else:
            if keys.keys() != self._keys.keys():
                log.info("JWKS keys now %s", sorted(keys))
            self._withdrawn = (self._withdrawn | self._keys.keys()) - keys.keys()
            self._keys = keys
            self._ok = True
        self._attempted_at = self._clock()
        metrics.jwks_fetched(self._ok, len(self._keys))
