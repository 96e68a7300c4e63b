"""CountsClient.stream against the live service: SSE, resume by ETag, polling while refused."""

import threading

import pytest
from counts_client import CountsClient, CountsError

from tests.support.api import Api, new_user, user_token
from tests.support.recorders import SleepRecorder
from tests.support.services import Gunicorn, LiveClient, wait_until


@pytest.fixture
def live(server_env, pg, redis_client, tmp_path):
    """Start the service with 1-s heartbeats (a stopping client is seen within one)."""
    started = []

    def start(**env) -> Gunicorn:
        settings = {**server_env, "COUNTS_STREAM_HEARTBEAT": "1", **env}
        started.append(Gunicorn(settings, workers=1,
                                log_path=tmp_path / f"gunicorn-{len(started)}.log").start())
        return started[-1]

    yield start
    for server in started:
        server.stop()


def unread_for(server, tokens):
    """Bob with one unread message from Alice: (api, bob, alice, conversation)."""
    api = Api(LiveClient(server.url), tokens)
    alice, bob = new_user(), new_user()
    conversation = api.conversation(alice, bob)
    assert api.send(conversation, alice).status_code == 201
    return api, bob, alice, conversation


def follow(client, user, stop, sleep=None):
    """Run client.stream on a thread; the results it reported."""
    seen: list = []
    thread = threading.Thread(target=client.stream, args=(user, seen.append, stop),
                              kwargs={"sleep": sleep}, daemon=True)
    thread.start()
    return thread, seen


def test_stream_reports_the_counts_then_every_change(live, tokens):
    server = live()
    api, bob, alice, conversation = unread_for(server, tokens)
    stop = threading.Event()
    with CountsClient(server.url, user_token(bob)) as client:
        thread, seen = follow(client, bob, stop)
        wait_until(lambda: len(seen) == 1, what="the first counts")
        assert api.send(conversation, alice).status_code == 201
        wait_until(lambda: len(seen) == 2, what="the change")
        stop.set()
        thread.join(10)
        assert not thread.is_alive()
    assert [r.counts["total"] for r in seen] == [1, 2]
    assert seen[1].etag != seen[0].etag
    assert client.cached(bob) == (seen[1].etag, seen[1].counts)


def test_stream_resumes_with_the_etag_it_holds(live, tokens):
    """Counts it already holds are not resent; the next change is."""
    server = live()
    api, bob, alice, conversation = unread_for(server, tokens)
    stop = threading.Event()
    with CountsClient(server.url, user_token(bob)) as client:
        polled = client.poll(bob)
        thread, seen = follow(client, bob, stop)
        wait_until(lambda: server_has_a_stream(server), what="the stream to open")
        assert api.send(conversation, alice).status_code == 201
        wait_until(lambda: seen, what="the change")
        stop.set()
        thread.join(10)
    assert [r.counts["total"] for r in seen] == [polled.counts["total"] + 1]


def server_has_a_stream(server) -> bool:
    """Whether the service holds a live connection (its metrics say so)."""
    text = LiveClient(server.admin_url).get("/metrics").text
    return any(line.startswith("counts_live_connections") and float(line.split()[-1]) >= 1
               for line in text.splitlines())


def test_stream_refused_falls_back_to_polling_then_tries_again(live, tokens):
    """At capacity (503 + Retry-After) the client polls conditionally, waits, and retries."""
    server = live(COUNTS_MAX_STREAMS="0")
    api, bob, alice, conversation = unread_for(server, tokens)
    stop = threading.Event()

    def then(n: int) -> None:
        if n == 1:
            assert api.send(conversation, alice).status_code == 201

    recorder = SleepRecorder(stop, 3, then)
    with CountsClient(server.url, user_token(bob), interval=2) as client:
        seen: list = []
        client.stream(bob, seen.append, stop, sleep=recorder)
    assert [(r.status, r.counts["total"]) for r in seen] == [(200, 1), (200, 2)]
    assert all(wait >= 5 for wait in recorder.waits)  # the 503's Retry-After (5-15 s), at least


def test_a_refused_token_ends_the_stream_loop(live, tokens):
    server = live()
    with CountsClient(server.url, "not-a-token") as client, pytest.raises(CountsError) as refused:
        client.stream(new_user(), print, threading.Event())
    assert refused.value.status == 401
