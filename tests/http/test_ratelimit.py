"""Per-user and per-IP rate limits (429 with Retry-After and X-Poll-Interval), and load-aware intervals."""

import secrets

import pytest

from counts.markers import keys
from counts.observability.load import LoadGauge
from tests.support.api import Api, new_user


@pytest.fixture
def limited(app_factory, tokens):
    """An app allowing 5 requests a minute per user and 3 per IP without a valid token."""
    app = app_factory(COUNTS_RATE_LIMIT=5, COUNTS_ANONYMOUS_RATE_LIMIT=3)
    return app, Api(app.test_client(), tokens)


def assert_429(response):
    assert response.status_code == 429
    assert response.mimetype == "application/problem+json"
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert response.headers["X-Poll-Interval"] == "7"


@pytest.mark.parametrize("conditional", [False, True], ids=["plain poll", "conditional poll"])
def test_a_user_polling_too_fast_gets_429_and_others_do_not(limited, conditional):
    _, api = limited
    greedy, calm = new_user(), new_user()
    etag = api.counts(greedy).headers["ETag"]
    for _ in range(4):
        assert api.counts(greedy, etag=etag if conditional else None).status_code in (200, 304)
    assert_429(api.counts(greedy, etag=etag if conditional else None))
    assert api.counts(calm).status_code == 200  # one user's excess is not another's problem


def test_a_matching_etag_does_not_bypass_the_limit(limited):
    _, api = limited
    user = new_user()
    etag = api.counts(user).headers["ETag"]
    statuses = [api.counts(user, etag=etag).status_code for _ in range(6)]
    assert statuses[:4] == [304] * 4
    assert statuses[4:] == [429, 429]


def test_writes_count_against_the_users_limit(limited):
    _, api = limited
    alice, bob = new_user(), new_user()
    conversation = api.conversation(alice, bob)  # a service call: not limited
    statuses = [api.send(conversation, alice).status_code for _ in range(6)]
    assert statuses == [201] * 5 + [429]


def test_services_are_not_limited(limited, tokens):
    app, _ = limited
    client = app.test_client()
    user = new_user()
    for _ in range(10):
        response = client.get(f"/v1/users/{user}/unread-counts", headers=tokens.service())
        assert response.status_code == 200


def test_unauthenticated_requests_are_limited_per_ip(limited):
    app, api = limited
    client = app.test_client()
    user = new_user()
    path = f"/v1/users/{user}/unread-counts"
    # Documentation addresses, random per run: the tests' Redis db outlives a run by a window.
    address, other = (f"2001:db8::{secrets.token_hex(4)}" for _ in range(2))
    first = [client.get(path, environ_base={"REMOTE_ADDR": address}) for _ in range(4)]
    assert [r.status_code for r in first] == [401, 401, 401, 429]
    assert_429(first[-1])
    other_ip = client.get(path, environ_base={"REMOTE_ADDR": other})
    assert other_ip.status_code == 401
    assert api.counts(user).status_code == 200  # a valid token is judged by its user's limit


def test_behind_a_trusted_proxy_the_forwarded_address_is_limited(app_factory, tokens):
    app = app_factory(COUNTS_ANONYMOUS_RATE_LIMIT=2, COUNTS_TRUSTED_PROXIES=1)
    client = app.test_client()
    path = f"/v1/users/{new_user()}/unread-counts"
    caller, other = (f"2001:db8::{secrets.token_hex(4)}" for _ in range(2))
    balancer = {"REMOTE_ADDR": "10.0.0.1"}
    statuses = [client.get(path, headers={"X-Forwarded-For": caller}, environ_base=balancer)
                .status_code for _ in range(3)]
    assert statuses == [401, 401, 429]
    assert client.get(path, headers={"X-Forwarded-For": other},
                      environ_base=balancer).status_code == 401


def test_rate_counter_shares_the_users_hash_tag(limited, redis_client):
    _, api = limited
    user = new_user()
    api.counts(user)
    key = keys.rate_key(str(user))
    assert key == f"counts:{{{user}}}:rate"
    assert int(redis_client.get(key)) == 1
    assert 0 < redis_client.ttl(key) <= 60


def test_limits_fail_open_when_redis_is_down(app_factory, tokens):
    app = app_factory(COUNTS_RATE_LIMIT=1, REDIS_URL="redis://127.0.0.1:1/0")
    api = Api(app.test_client(), tokens)
    user = new_user()
    assert [api.counts(user).status_code for _ in range(3)] == [200, 200, 200]


# --- X-Poll-Interval rises while a worker is saturated -----------------------------------------

def test_load_gauge_doubles_the_interval_only_while_saturated():
    gauge = LoadGauge(threads=4, base_interval=30)
    assert gauge.poll_interval() == "30"
    for _ in range(200):  # every thread busy, and more arriving
        gauge.started()
    assert gauge.saturated
    assert gauge.poll_interval() == "60"
    for _ in range(200):
        gauge.finished()
    for _ in range(200):  # arrivals find the worker idle again
        gauge.started()
        gauge.finished()
    assert gauge.poll_interval() == "30"


def test_a_saturated_worker_asks_clients_to_slow_down(app, api):
    user = new_user()
    load = app.extensions["counts"].load
    assert api.counts(user).headers["X-Poll-Interval"] == "7"
    load.average = load.threads  # as if every thread had been busy for a while
    load.in_flight = load.threads
    busy = api.counts(user)
    assert busy.headers["X-Poll-Interval"] == "14"
    assert api.counts(user, etag=busy.headers["ETag"]).headers["X-Poll-Interval"] == "14"
