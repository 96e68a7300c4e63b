"""counts_client against the live service: ETags, X-Poll-Interval, Retry-After, jittered backoff.

No test sleeps for real: CountsClient.run takes a `sleep`, and these tests pass a recorder that
notes each wait (and may change the world, or stop the loop) instead of waiting.
"""

import random
import threading
from email.utils import formatdate

import pytest
import requests
from counts_client import CountsClient, CountsError, CountsUnavailable, PollResult, parse_retry_after
from requests.adapters import BaseAdapter

from tests.support.api import Api, new_user, user_token
from tests.support.postgres import proxied_url
from tests.support.proxy import TcpProxy
from tests.support.recorders import SleepRecorder
from tests.support.services import Gunicorn, LiveClient, free_port

SERVER_POLL_INTERVAL = 7  # environment.gunicorn_env sends X-Poll-Interval: 7
RETRY_AFTER = 5  # the service's default COUNTS_RETRY_AFTER


@pytest.fixture
def live_api(live_server, tokens) -> Api:
    return Api(LiveClient(live_server.url), tokens)


@pytest.fixture
def bob_with_unread(live_api):
    """Bob, with one unread message from Alice: (bob, alice, conversation)."""
    alice, bob = new_user(), new_user()
    conversation = live_api.conversation(alice, bob)
    assert live_api.send(conversation, alice).status_code == 201
    return bob, alice, conversation


def test_first_poll_200_then_304_with_the_cached_counts(live_server, bob_with_unread):
    bob, _, conversation = bob_with_unread
    with CountsClient(live_server.url, user_token(bob)) as client:
        first = client.poll(bob)
        assert (first.status, first.changed) == (200, True)
        assert first.counts["total"] == 1
        assert [(c["conversation_id"], c["unread"]) for c in first.counts["conversations"]] == [
            (conversation, 1)]
        assert first.etag.startswith('"')

        second = client.poll(bob)
        assert (second.status, second.changed) == (304, False)
        assert second.counts == first.counts
        assert second.etag == first.etag


def test_a_muted_conversation_leaves_the_badge_and_a_mention_counts(live_server, live_api,
                                                                  bob_with_unread):
    bob, alice, conversation = bob_with_unread
    assert live_api.notify(conversation, bob, "mentions").status_code == 200
    assert live_api.mention(conversation, alice, [bob]).status_code == 201
    with CountsClient(live_server.url, user_token(bob)) as client:
        result = client.poll(bob)
        assert (result.total, result.mentions, result.badge) == (0, 1, 1)
        assert result.counts["conversations"][0]["unread"] == 2
        assert client.poll(bob).badge == 1  # a 304 keeps the cached body
    old_server = PollResult(str(bob), {"total": 3, "conversations": []}, True, 200, None, 1.0)
    assert (old_server.badge, old_server.mentions) == (3, 0)


def test_a_new_message_makes_the_next_poll_changed(live_server, live_api, bob_with_unread):
    bob, alice, conversation = bob_with_unread
    with CountsClient(live_server.url, lambda: user_token(bob)) as client:  # a token provider
        before = client.poll(bob)
        assert live_api.send(conversation, alice).status_code == 201
        after = client.poll(bob)
        assert (after.status, after.changed) == (200, True)
        assert after.counts["total"] == before.counts["total"] + 1 == 2
        assert after.etag != before.etag
        assert client.poll(bob).status == 304


def test_run_calls_on_change_only_when_the_counts_change(live_server, live_api, bob_with_unread):
    bob, alice, conversation = bob_with_unread
    stop, seen = threading.Event(), []

    def then(n: int) -> None:
        if n == 2:  # between the 2nd and 3rd poll, a message arrives
            assert live_api.send(conversation, alice).status_code == 201

    with CountsClient(live_server.url, user_token(bob)) as client:
        client.run(bob, seen.append, stop, sleep=SleepRecorder(stop, 4, then))
    assert [(r.status, r.counts["total"]) for r in seen] == [(200, 1), (200, 2)]


@pytest.mark.parametrize(("own", "expected"), [(3, SERVER_POLL_INTERVAL), (10, 10)])
def test_waits_the_larger_of_its_interval_and_x_poll_interval(live_server, bob_with_unread,
                                                               own, expected):
    bob = bob_with_unread[0]
    stop = threading.Event()
    sleep = SleepRecorder(stop, 3)
    with CountsClient(live_server.url, user_token(bob), interval=own) as client:
        client.run(bob, lambda result: None, stop, sleep=sleep)
    assert sleep.waits == [expected] * 3  # after the 200 and after each 304


@pytest.fixture
def proxied_server(server_env, database_url, pg_proxy, pg, redis_client):
    """The service under gunicorn, reaching Postgres through `pg_proxy` (which a test may cut)."""
    server = Gunicorn({**server_env, "DATABASE_URL": proxied_url(database_url, pg_proxy),
                       "COUNTS_PG_TIMEOUT": "1"}).start()
    yield server
    server.stop()


def test_postgres_down_304_keeps_the_counts_and_503_retry_after_is_honoured(
        proxied_server, pg_proxy, tokens):
    api = Api(LiveClient(proxied_server.url), tokens)
    alice, bob = new_user(), new_user()
    api.send(api.conversation(alice, bob), alice)
    holder = CountsClient(proxied_server.url, user_token(bob), rng=random.Random(7))
    newcomer = CountsClient(proxied_server.url, user_token(bob), interval=3, rng=random.Random(7))
    counts = holder.poll(bob).counts

    pg_proxy.set_mode("cut")
    # The holder's ETag still matches: Redis alone answers, and it keeps its counts.
    kept = holder.poll(bob)
    assert (kept.status, kept.changed, kept.counts) == (304, False, counts)
    # The newcomer has no ETag, so Postgres must answer: 503 with Retry-After.
    with pytest.raises(CountsUnavailable) as failed:
        newcomer.poll(bob)
    assert (failed.value.status, failed.value.retry_after) == (503, RETRY_AFTER)
    # Never sooner than asked; at most one backoff ceiling (base 1 s on a first failure) later.
    assert RETRY_AFTER <= failed.value.wait < RETRY_AFTER + newcomer.backoff_base

    stop = threading.Event()
    sleep = SleepRecorder(stop, 2, then=lambda n: pg_proxy.set_mode("forward"))
    seen: list[PollResult] = []
    newcomer.run(bob, seen.append, stop, sleep=sleep)
    assert RETRY_AFTER <= sleep.waits[0] < RETRY_AFTER + 2 * newcomer.backoff_base  # 2nd failure
    assert sleep.waits[1] == SERVER_POLL_INTERVAL  # recovered: back to the normal pace
    assert [(r.status, r.counts) for r in seen] == [(200, counts)]
    assert newcomer.failures == 0
    holder.close()
    newcomer.close()


def test_429_retry_after_is_honoured_and_the_cached_counts_survive(server_env, pg, redis_client,
                                                                   tokens):
    server = Gunicorn({**server_env, "COUNTS_RATE_LIMIT": "2"}).start()  # 2 polls a minute
    try:
        bob = new_user()
        client = CountsClient(server.url, user_token(bob), interval=3, rng=random.Random(3))
        with client:
            first = client.poll(bob)
            assert client.poll(bob).status == 304
            with pytest.raises(CountsUnavailable) as limited:
                client.poll(bob)
    finally:
        server.stop()
    assert limited.value.status == 429
    assert 0 < limited.value.retry_after <= 60  # what is left of the rate window
    assert limited.value.retry_after <= limited.value.wait < limited.value.retry_after + 1
    assert client.cached(bob) == (first.etag, first.counts)  # the next 304 still has them


def full_jitter(seed: int, base: float, cap: float, failures: list[int]) -> list[float]:
    """The delays a client seeded with `seed` must draw, for these consecutive-failure counts."""
    rng = random.Random(seed)
    return [rng.uniform(0, min(cap, base * 2 ** (n - 1))) for n in failures]


def test_connection_errors_back_off_exponentially_with_full_jitter_under_a_cap():
    stop = threading.Event()
    sleep = SleepRecorder(stop, 9)
    closed = f"http://127.0.0.1:{free_port()}"  # nobody listens: connection refused
    with CountsClient(closed, "any-token", backoff_base=0.5, backoff_cap=8.0,
                      rng=random.Random(42)) as client:
        client.run(new_user(), lambda result: None, stop, sleep=sleep)
    ceilings = [min(8.0, 0.5 * 2 ** n) for n in range(9)]
    assert ceilings == [0.5, 1, 2, 4, 8, 8, 8, 8, 8]  # doubling, then held at the cap
    assert all(0 <= wait <= ceiling for wait, ceiling in zip(sleep.waits, ceilings, strict=True))
    assert sleep.waits == full_jitter(42, 0.5, 8.0, list(range(1, 10)))
    assert len(set(sleep.waits)) == 9  # jittered: no two clients' schedules line up by design
    assert client.failures == 9


def test_backoff_resets_after_a_success(live_server, bob_with_unread):
    bob = bob_with_unread[0]
    proxy = TcpProxy(live_server.port)  # the service as the client sees it; cuttable
    proxy.set_mode("cut")
    # Fail 3 times, succeed once (proxy forwards), then fail again: the 5th wait starts over.
    modes = {3: "forward", 4: "cut"}
    stop = threading.Event()
    sleep = SleepRecorder(stop, 5, then=lambda n: proxy.set_mode(modes.get(n, proxy.mode)))
    seen: list[PollResult] = []
    try:
        with CountsClient(f"http://127.0.0.1:{proxy.port}", user_token(bob), interval=3,
                          backoff_base=2.0, backoff_cap=60.0, rng=random.Random(5)) as client:
            client.run(bob, seen.append, stop, sleep=sleep)
    finally:
        proxy.close()
    assert [r.status for r in seen] == [200]
    backoffs = full_jitter(5, 2.0, 60.0, [1, 2, 3, 1])
    assert sleep.waits == [*backoffs[:3], SERVER_POLL_INTERVAL, backoffs[3]]
    assert sleep.waits[4] <= 2.0  # the ceiling is the base again, not 16
    assert client.failures == 1


def test_a_refused_poll_ends_the_loop_instead_of_retrying(live_server, bob_with_unread):
    bob = bob_with_unread[0]
    stop = threading.Event()
    sleep = SleepRecorder(stop, 1)
    client = CountsClient(live_server.url, user_token(new_user()))  # someone else's token
    with client, pytest.raises(CountsError) as refused:
        client.run(bob, lambda result: None, stop, sleep=sleep)
    assert refused.value.status == 403
    assert not isinstance(refused.value, CountsUnavailable)
    assert sleep.waits == []


# --- what the live service never sends: 429, HTTP-date Retry-After, malformed headers ----------

class CannedAdapter(BaseAdapter):
    """A requests transport answering from a list of (status, headers, body), no network."""

    def __init__(self, answers: list[tuple[int, dict[str, str], bytes]]):
        super().__init__()
        self.answers = list(answers)
        self.requests: list[requests.PreparedRequest] = []

    def send(self, request, **kwargs) -> requests.Response:
        self.requests.append(request)
        status, headers, body = self.answers.pop(0)
        response = requests.Response()
        response.status_code, response.url, response.request = status, request.url, request
        response.headers.update(headers)
        response._content = body
        return response

    def close(self) -> None:
        pass


def canned_client(answers, **kwargs) -> tuple[CountsClient, CannedAdapter]:
    session, adapter = requests.Session(), CannedAdapter(answers)
    session.mount("http://", adapter)
    return CountsClient("http://counts.test", "t", session=session, **kwargs), adapter


def test_429_with_an_http_date_retry_after_uses_the_injected_clock():
    now = 1_700_000_000.0
    later = formatdate(now + 30, usegmt=True)
    client, _ = canned_client([(429, {"Retry-After": later}, b"")], rng=random.Random(1),
                              clock=lambda: now)
    with pytest.raises(CountsUnavailable) as limited:
        client.poll("u")
    assert (limited.value.status, limited.value.retry_after) == (429, 30.0)
    assert 30.0 <= limited.value.wait < 31.0


@pytest.mark.parametrize(("value", "expected"), [
    ("120", 120.0), ("0", 0.0), (None, None), ("", None), ("soon", None), ("-5", None),
    ("1.5", None),  # delta-seconds are whole: a malformed value falls back to the backoff
    ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # in the past: retry now
])
def test_parse_retry_after(value, expected):
    assert parse_retry_after(value, now=1_700_000_000.0) == expected


def test_malformed_x_poll_interval_falls_back_to_the_clients_interval():
    body = b'{"total": 0, "unread_conversations": 0, "conversations": []}'
    client, adapter = canned_client([
        (200, {"ETag": '"m1"', "X-Poll-Interval": "soon"}, body),
        (304, {"ETag": '"m1"', "X-Poll-Interval": "inf"}, b""),
        (200, {"X-Poll-Interval": "45"}, body),  # no ETag: nothing to revalidate with
        (200, {"ETag": '"m2"'}, body),
    ], interval=12)
    assert [client.poll("u").wait for _ in range(3)] == [12, 12, 45]
    assert client.poll("u").changed is False  # a 200 with the same counts is not a change
    sent = [request.headers.get("If-None-Match") for request in adapter.requests]
    assert sent == [None, '"m1"', '"m1"', None]
    assert adapter.requests[0].headers["Authorization"] == "Bearer t"
