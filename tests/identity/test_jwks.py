"""counts.identity.jwks.KeySet against a real JWKS endpoint: fetch limits, rotation, outages, refresh."""

import threading
import uuid

import pytest

from counts.errors import DependencyUnavailable, Problem, Unauthorized
from counts.identity import TokenVerifier
from counts.identity.jwks import KeySet, usable_keys
from tests.support.api import admin_client
from tests.support.identity import ISSUER, SigningKey, supabase_claims
from tests.support.services import wait_until

USER = uuid.UUID("0b7f1c4e-2d3a-4f5b-9c6d-7e8f9a0b1c2d")


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def keyset_factory():
    """KeySets that are closed (their refresher stopped) after the test."""
    made = []

    def make(url, **options):
        made.append(KeySet(url, **options))
        return made[-1]

    yield make
    for keyset in made:
        keyset.close()


@pytest.fixture
def keyset(provider, keyset_factory, clock):
    """Default limits, a hand-moved clock: the refresher never comes due during a test."""
    return keyset_factory(provider.url, clock=clock)


def bearer(token: str) -> str:
    return f"Bearer {token}"


def verifier_for(keyset) -> TokenVerifier:
    return TokenVerifier(None, keyset, issuer=ISSUER)


def token_from(key: SigningKey, user=USER, **header) -> str:
    return bearer(key.sign(supabase_claims(user), **header))


# --- rotation and revocation -------------------------------------------------------------------

def test_a_rotated_key_works_without_a_restart(provider, keyset):
    verifier = verifier_for(keyset)
    old = provider.keys[0]
    assert verifier.verify(token_from(old)).user_id == USER
    assert provider.fetches == 1
    new = SigningKey("EC")
    provider.publish(new, old)  # the provider rotates: a new key signs, the old one still listed
    assert verifier.verify(token_from(new)).user_id == USER
    assert provider.fetches == 2  # the unknown kid fetched the set once
    assert verifier.verify(token_from(old, user=uuid.uuid4())).user_id is not None  # old still good


def test_a_revoked_key_stops_verifying_even_cached_tokens(provider, keyset, clock):
    verifier = verifier_for(keyset)
    old, new = provider.keys[0], SigningKey("EC")
    cached = token_from(old)
    assert verifier.verify(cached).user_id == USER
    provider.publish(new)  # the old key is revoked
    clock.now += 61
    assert verifier.verify(token_from(new)).user_id == USER  # this fetch learns of the revocation
    with pytest.raises(Unauthorized, match="not published"):
        verifier.verify(cached)


def test_the_refresher_fetches_on_schedule_without_any_request(provider, keyset_factory):
    keyset = keyset_factory(provider.url, refresh=0.05)
    assert keyset.status() == "ok"
    new = SigningKey("RSA")
    provider.publish(*provider.keys, new)
    wait_until(lambda: keyset.publishes(new.kid), what="the scheduled refresh to find the new key")
    wait_until(lambda: provider.fetches >= 4, what="more scheduled refreshes")


def test_close_stops_the_refresher(provider, keyset_factory):
    keyset = keyset_factory(provider.url, refresh=0.05)
    keyset.status()
    keyset.close()
    assert not keyset._thread.is_alive()
    fetches = provider.fetches
    assert keyset.signing_key(provider.keys[0].kid) is not None  # lookups go on after close
    assert provider.fetches == fetches


# --- fetch limits ------------------------------------------------------------------------------

def test_a_flood_of_unknown_kids_fetches_once_a_minute(provider, keyset, clock):
    verifier = verifier_for(keyset)
    key = provider.keys[0]
    assert verifier.verify(token_from(key)).user_id == USER
    assert provider.fetches == 1
    with pytest.raises(Unauthorized, match="not published"):  # a fetch for it says: no such key
        verifier.verify(token_from(key, kid=str(uuid.uuid4())))
    for _ in range(299):
        # No fetch for these yet: each may be a key published since, so 503, never a 401 that
        # would tell an app its session is bad. Retry-After: when a fetch may be made.
        with pytest.raises(DependencyUnavailable) as unavailable:
            verifier.verify(token_from(key, kid=str(uuid.uuid4())))
        assert 1 <= int(unavailable.value.headers["Retry-After"]) <= 30
    assert provider.fetches == 2  # the first unknown kid fetched; the other 299 did not
    clock.now += 59
    with pytest.raises(DependencyUnavailable):
        verifier.verify(token_from(key, kid="made-up"))
    assert provider.fetches == 2
    clock.now += 2  # a minute after the last one
    with pytest.raises(Unauthorized):
        verifier.verify(token_from(key, kid="made-up-too"))
    assert provider.fetches == 3


def test_a_concurrent_flood_of_unknown_kids_fetches_once(provider, keyset):
    verifier = verifier_for(keyset)
    key = provider.keys[0]
    verifier.verify(token_from(key))
    refused = []

    def flood():
        for _ in range(25):
            try:
                verifier.verify(token_from(key, kid=str(uuid.uuid4())))
            except (Unauthorized, DependencyUnavailable):
                refused.append(1)

    threads = [threading.Thread(target=flood) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(refused) == 200
    assert provider.fetches == 2


class CountingCondition(threading.Condition):
    """The KeySet's condition, counting the requests that waited on it for a fetch."""

    def __init__(self):
        super().__init__()
        self.waited = 0

    def wait_for(self, predicate, timeout=None):
        self.waited += 1
        return super().wait_for(predicate, timeout)


def test_concurrent_requests_for_a_new_kid_share_one_fetch(provider, keyset_factory, clock):
    keyset = keyset_factory(provider.url, clock=clock)
    keyset._changed = CountingCondition()  # before first use: the refresher uses it too
    verifier = verifier_for(keyset)
    verifier.verify(token_from(provider.keys[0]))
    new = SigningKey("EC")
    provider.publish(new)
    provider.hold()  # the fetch the first request asks for stays in flight...
    users = [uuid.uuid4() for _ in range(6)]
    found = {}
    threads = [threading.Thread(target=lambda u=u: found.update(
        {u: verifier.verify(token_from(new, user=u)).user_id})) for u in users]
    for thread in threads:
        thread.start()
    # ...until every request waits for it.
    wait_until(lambda: provider.in_flight == 1 and keyset._changed.waited == 1 + len(users),
               what="every request to wait for the one fetch")
    provider.release()
    for thread in threads:
        thread.join()
    assert found == {u: u for u in users}
    assert provider.fetches == 2  # the first one, then one for all six requests


def test_concurrent_requests_share_one_failing_first_fetch(provider, keyset):
    keyset._changed = CountingCondition()
    verifier = verifier_for(keyset)
    provider.mode = "error"
    provider.hold()
    errors = []

    def poll():
        try:
            verifier.verify(token_from(provider.keys[0], user=uuid.uuid4()))
        except DependencyUnavailable:
            errors.append(1)

    threads = [threading.Thread(target=poll) for _ in range(6)]
    for thread in threads:
        thread.start()
    wait_until(lambda: provider.in_flight == 1 and keyset._changed.waited == 6,
               what="every request to wait for the first fetch")
    provider.release()
    for thread in threads:
        thread.join()
    assert len(errors) == 6  # 503 all: no verdict without keys
    assert provider.fetches == 1  # the one failed answer served them all...
    assert (keyset._attempts, keyset._wanted, keyset._fetching) == (1, False, False)  # ...and no
    # request left a second one asked for (the retry is 30 s away on the test's clock)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("first", [True, False], ids=["first fetch", "after a good fetch"])
def test_a_trickling_endpoint_holds_a_request_no_longer_than_the_timeout(provider, keyset_factory,
                                                                         first):
    keyset = keyset_factory(provider.url, timeout=0.3, unknown_kid_interval=0)
    keyset._changed = CountingCondition()
    verifier = verifier_for(keyset)
    new = SigningKey("EC")
    if not first:
        verifier.verify(token_from(provider.keys[0]))
        provider.publish(new, *provider.keys)
    provider.mode = "trickle"  # a byte at a time, never done: no socket timeout ever fires
    with pytest.raises(DependencyUnavailable):  # no answer in time: 503, not a 401 verdict
        verifier.verify(token_from(new))
    assert provider.in_flight == 1 and keyset._fetching  # the request left; the fetch goes on
    waited = keyset._changed.waited
    for _ in range(5):  # later requests do not wait for the fetch that outlasted the first
        with pytest.raises(DependencyUnavailable):
            verifier.verify(token_from(new, user=uuid.uuid4()))
    assert keyset._changed.waited == waited
    assert provider.fetches == 1 + (not first)
    provider.mode = "up"  # the body ends: the fetch completes and the keys arrive
    wait_until(lambda: keyset.publishes(new.kid) == (not first) and keyset.status() == "ok",
               what="the slow fetch to finish")
    assert verifier.verify(token_from(provider.keys[0])).user_id == USER


def test_a_failing_endpoint_is_retried_sooner_than_the_refresh(provider, keyset_factory):
    keyset = keyset_factory(provider.url, refresh=300, retry=0.05)
    provider.mode = "error"
    assert keyset.status() == "unavailable"
    wait_until(lambda: provider.fetches >= 3, what="retries")
    provider.mode = "up"
    wait_until(lambda: keyset.status() == "ok", what="a retry to succeed")
    fetches = provider.fetches
    assert keyset.signing_key(provider.keys[0].kid) is not None
    assert provider.fetches == fetches  # now ok: the next fetch is 300 s away


def test_a_fetch_in_flight_never_holds_a_known_key_or_a_cached_token(provider, keyset):
    verifier = verifier_for(keyset)
    key = provider.keys[0]
    cached = token_from(key)
    verifier.verify(cached)
    provider.hold()
    outcome = []

    def unknown_kid():
        try:
            verifier.verify(token_from(key, kid="unknown"))
        except Problem as problem:  # 401 once the fetch answers (503 had it taken over 3 s)
            outcome.append(problem.status)

    blocked = threading.Thread(target=unknown_kid)
    blocked.start()
    wait_until(lambda: provider.in_flight == 1, what="a fetch in flight")
    # While that fetch hangs: the cached token, and a new token signed by a known key, verify.
    assert verifier.verify(cached).user_id == USER
    assert verifier.verify(token_from(key, user=uuid.uuid4())).user_id is not None
    assert provider.in_flight == 1
    provider.release()
    blocked.join()
    assert outcome in ([401], [503])


# --- the endpoint down -------------------------------------------------------------------------

@pytest.mark.parametrize("outage", ["stop", "error", "garbage"])
def test_endpoint_down_after_a_first_fetch_keeps_the_known_keys(provider, keyset, clock, outage):
    verifier = verifier_for(keyset)
    key = provider.keys[1]
    verifier.verify(token_from(key))
    assert keyset.status() == "ok"
    if outage == "stop":
        provider.stop()
    else:
        provider.mode = outage
    clock.now += 61
    with pytest.raises(DependencyUnavailable):  # an unknown kid: the fetch fails, so no verdict
        verifier.verify(token_from(key, kid="rotated-meanwhile"))
    assert keyset.status() == "stale"
    assert verifier.verify(token_from(key, user=uuid.uuid4())).user_id is not None  # new token, known key
    assert keyset.publishes(key.kid)
    with pytest.raises(DependencyUnavailable):  # no further fetch within the minute: still no verdict
        verifier.verify(token_from(key, kid="another"))


def test_endpoint_back_after_an_outage_is_ok_again(provider, keyset, clock):
    verifier = verifier_for(keyset)
    verifier.verify(token_from(provider.keys[0]))
    provider.mode = "error"
    clock.now += 61
    with pytest.raises(DependencyUnavailable):
        verifier.verify(token_from(provider.keys[0], kid="new"))
    provider.mode = "up"
    new = SigningKey("EC", kid="new")
    provider.publish(new)
    clock.now += 61
    assert verifier.verify(token_from(new)).user_id == USER
    assert keyset.status() == "ok"


def test_endpoint_down_from_the_start_is_503_not_401(provider, keyset):
    provider.stop()
    with pytest.raises(DependencyUnavailable):
        verifier_for(keyset).verify(token_from(provider.keys[0]))
    assert keyset.status() == "unavailable"


def test_a_hung_first_fetch_gives_up_after_the_timeout(provider, keyset_factory):
    keyset = keyset_factory(provider.url, timeout=0.2)
    provider.hold()  # accepts, never answers (until the fixture releases it)
    with pytest.raises(DependencyUnavailable):
        verifier_for(keyset).verify(token_from(provider.keys[0]))
    assert provider.fetches == 1


# --- what a JWKS may hold ----------------------------------------------------------------------

def test_only_asymmetric_signing_keys_with_a_kid_are_used():
    ec, rsa = SigningKey("EC"), SigningKey("RSA")
    jwks = {"keys": [
        ec.jwk(),
        {**rsa.jwk(), "use": "enc"},  # for encryption, not signatures
        {k: v for k, v in SigningKey("EC").jwk().items() if k != "kid"},  # no kid
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0", "alg": "HS256"},
        {"kty": "EC", "kid": "broken", "crv": "P-256", "x": "AAAA"},  # unparseable
        "not a key",
    ]}
    assert list(usable_keys(jwks)) == [ec.kid]


@pytest.mark.parametrize("document", [
    {"keys": []},
    {"keys": [{"kty": "oct", "kid": "hmac", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"}]},
    {"no": "keys"},
    {"keys": "EC"},
    ["keys"],
])
def test_a_jwks_without_usable_keys_is_a_failed_fetch(provider, keyset, clock, monkeypatch, document):
    verifier = verifier_for(keyset)
    verifier.verify(token_from(provider.keys[0]))
    monkeypatch.setattr(keyset._client, "fetch_data", lambda: document)
    clock.now += 61
    with pytest.raises(DependencyUnavailable):
        verifier.verify(token_from(provider.keys[0], kid="unknown"))
    assert keyset.publishes(provider.keys[0].kid)  # the keys known before stay
    assert keyset.status() == "stale"


# --- /readyz -----------------------------------------------------------------------------------

def test_readyz_reports_the_jwks(provider, app_factory):
    app = app_factory(COUNTS_JWKS_URL=provider.url)
    client = admin_client(app)
    body = client.get("/readyz").get_json()
    assert body == {"status": "ok", "postgres": "ok", "redis": "ok", "jwks": "ok",
                    "push": {"queued": 0, "oldest_seconds": 0.0}}
    provider.mode = "error"
    keys = app.extensions["counts"].tokens.keys
    keys._unknown_kid_fetch_at -= 61  # a minute on: the next unknown kid fetches (and fails)
    with pytest.raises(DependencyUnavailable):
        keys.signing_key("unknown")
    response = client.get("/readyz")
    assert response.status_code == 200  # Postgres answers: ready, the known keys still work
    assert response.get_json() == {"status": "degraded", "postgres": "ok", "redis": "ok",
                                   "jwks": "stale", "push": {"queued": 0, "oldest_seconds": 0.0}}


def test_readyz_without_any_key_is_degraded_not_down(provider, app_factory):
    provider.stop()
    response = admin_client(app_factory(COUNTS_JWKS_URL=provider.url)).get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["status"] == "degraded"
    assert response.get_json()["jwks"] == "unavailable"


def test_readyz_without_a_jwks_says_nothing_of_it(app):
    assert "jwks" not in admin_client(app).get("/readyz").get_json()
