"""SSE and WebSocket streams and their tickets, against the service under gunicorn (gevent)."""

import json
import os
import signal
import statistics
import time
import uuid

import pytest
import requests
import websocket

from counts.identity import mint_token
from counts.live.subscribers import READ_SLICE
from counts.markers import keys, presence
from tests.support.api import new_user
from tests.support.environment import SECRET
from tests.support.identity import SigningKey, supabase_claims
from tests.support.live_clients import SseStream, WsStream, ws_url
from tests.support.services import Gunicorn, wait_until

HEARTBEAT = 1


@pytest.fixture
def live(server_env, pg, redis_client, tmp_path):
    """Start the service under gunicorn (one gevent worker, 1-s heartbeats), stopped after."""
    started = []

    def start(**env) -> Gunicorn:
        settings = {**server_env, "COUNTS_STREAM_HEARTBEAT": str(HEARTBEAT),
                    "COUNTS_WS_PING_INTERVAL": "1", **env}
        server = Gunicorn(settings, workers=1, log_path=tmp_path / f"gunicorn-{len(started)}.log")
        started.append(server.start())
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def server(live):
    return live()


class User:
    """A user of the live service, with a conversation another user writes to."""

    def __init__(self, server: Gunicorn, tokens):
        self.url, self.tokens = server.url, tokens
        self.id, self.friend = str(new_user()), str(new_user())
        self.auth = tokens.user(self.id)
        created = requests.post(f"{self.url}/v1/conversations", headers=tokens.service(),
                                json={"member_ids": [self.id, self.friend]}, timeout=10)
        self.conversation = created.json()["conversation_id"]

    @property
    def stream_url(self) -> str:
        return f"{self.url}/v1/users/{self.id}/unread-counts/stream"

    @property
    def ws_url(self) -> str:
        return ws_url(f"{self.url}/v1/users/{self.id}/unread-counts/ws")

    def receive_message(self) -> None:
        """The friend sends this user a message (201 before this returns)."""
        sent = requests.post(f"{self.url}/v1/conversations/{self.conversation}/messages",
                             headers=self.tokens.user(self.friend),
                             json={"sender_id": self.friend, "body": "hi"}, timeout=10)
        assert sent.status_code == 201, sent.text

    def poll(self) -> requests.Response:
        return requests.get(f"{self.url}/v1/users/{self.id}/unread-counts", headers=self.auth,
                            timeout=10)

    def ticket(self, auth: dict | None = None) -> str:
        response = requests.post(f"{self.url}/v1/users/{self.id}/stream-tickets",
                                 headers=auth or self.auth, timeout=10)
        assert response.status_code == 201, response.text
        assert response.json()["expires_in"] == 30
        assert response.headers["Cache-Control"] == "no-store"
        return response.json()["ticket"]


@pytest.fixture
def user(server, tokens) -> User:
    return User(server, tokens)


def test_sse_sends_the_counts_at_once_then_every_change(user):
    stream = SseStream(user.stream_url, user.auth)
    try:
        assert stream.status == 200
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        assert stream.headers["X-Accel-Buffering"] == "no"
        assert stream.next(kinds=("retry",)).text == "7000"  # the poll interval, in ms
        first = stream.next()
        assert first.etag == user.poll().headers["ETag"]  # exactly the header's value
        assert first.counts["total"] == 0
        user.receive_message()
        second = stream.next()
        assert second.counts["total"] == 1
        assert second.etag == user.poll().headers["ETag"] != first.etag
        assert stream.next(kinds=("comment",)).text == "heartbeat"
    finally:
        stream.close()


def test_sse_resumes_from_last_event_id_without_resending(user):
    etag = user.poll().headers["ETag"]
    stream = SseStream(user.stream_url, {**user.auth, "Last-Event-ID": etag})
    try:
        assert stream.next(kinds=("comment",)).text == "connected"
        user.receive_message()
        event = stream.next()
        assert event.counts["total"] == 1 and event.etag != etag
    finally:
        stream.close()


def test_sse_with_a_stale_last_event_id_gets_the_current_counts(user):
    stale = user.poll().headers["ETag"]
    user.receive_message()
    stream = SseStream(user.stream_url, {**user.auth, "Last-Event-ID": stale})
    try:
        event = stream.next()
        assert event.counts["total"] == 1 and event.etag != stale
    finally:
        stream.close()


def test_a_ticket_opens_a_stream_once(user):
    ticket = user.ticket()
    stream = SseStream(f"{user.stream_url}?ticket={ticket}")
    try:
        assert stream.status == 200
        assert stream.next().counts["user_id"] == user.id
    finally:
        stream.close()
    again = SseStream(f"{user.stream_url}?ticket={ticket}")
    assert again.status == 401
    assert again.headers["Content-Type"] == "application/problem+json"


def test_a_service_may_ask_a_ticket_for_a_user(user, tokens):
    ticket = user.ticket(tokens.service())
    stream = SseStream(f"{user.stream_url}?ticket={ticket}")
    try:
        assert stream.next().counts["user_id"] == user.id
    finally:
        stream.close()


@pytest.mark.parametrize("transport", ["sse", "ws"])
def test_streams_refuse_before_they_start(user, server, tokens, redis_client, transport):
    """Auth before anything (invariant 8): 401/403 as problem+json, for both transports."""
    other = User(server, tokens)
    cases = [
        ({}, "", 401),
        (tokens.user(other.id), "", 403),
        ({}, "?ticket=made-up", 401),
        ({}, f"?ticket={other.ticket()}", 403),
        ({}, "?ticket=" + "x" * 500, 401),
    ]
    expired = "expired-ticket-for-test"
    redis_client.set(keys.ticket_key(expired),
                     json.dumps([user.id, "authenticated", user.id, time.time() - 1]), ex=30)
    cases.append(({}, f"?ticket={expired}", 401))
    for headers, query, status in cases:
        if transport == "sse":
            response = SseStream(user.stream_url + query, headers)
            assert (response.status, response.body["status"]) == (status, status), query
        else:
            with pytest.raises(websocket.WebSocketBadStatusException) as refused:
                WsStream(user.ws_url + query, [f"{k}: {v}" for k, v in headers.items()])
            assert refused.value.status_code == status, query
            assert json.loads(refused.value.resp_body)["status"] == status


def test_tickets_are_only_for_that_user_or_a_service(user, server, tokens):
    other = User(server, tokens)
    response = requests.post(f"{user.url}/v1/users/{user.id}/stream-tickets",
                             headers=other.auth, timeout=10)
    assert response.status_code == 403
    response = requests.post(f"{user.url}/v1/users/{user.id}/stream-tickets", timeout=10)
    assert response.status_code == 401


def test_a_stream_ends_when_its_token_expires(user):
    token = mint_token(SECRET, user.id, ttl=3)
    stream = SseStream(user.stream_url, {"Authorization": f"Bearer {token}"})
    assert stream.next().kind == "counts"
    assert stream.next(timeout=15).kind == "end"
    token = mint_token(SECRET, user.id, ttl=3)  # the ticket carries its expiry
    ws = WsStream(user.ws_url + f"?ticket={user.ticket({'Authorization': f'Bearer {token}'})}")
    assert ws.next().kind == "counts"
    end = ws.next(timeout=15)
    assert end.kind == "end" and end.text.startswith("1008")


def test_streams_end_when_their_tokens_signing_key_is_withdrawn(live, provider, tokens):
    """Token and ticket alike: a stream opened with an identity provider's key ends once the
    JWKS stops publishing that key (at the next heartbeat after the refresh that drops it)."""
    server = live(COUNTS_JWKS_URL=provider.url, COUNTS_JWKS_REFRESH="0.5")
    user = User(server, tokens)
    signed = f"Bearer {provider.keys[0].sign(supabase_claims(user.id))}"
    streams = [SseStream(user.stream_url, {"Authorization": signed}),
               SseStream(f"{user.stream_url}?ticket={user.ticket({'Authorization': signed})}"),
               WsStream(f"{user.ws_url}?ticket={user.ticket({'Authorization': signed})}")]
    assert [stream.next().kind for stream in streams] == ["counts"] * 3
    provider.publish(SigningKey("EC"))  # the key that signed the token is withdrawn
    ends = [stream.next(timeout=15) for stream in streams]
    assert [end.kind for end in ends] == ["end"] * 3
    assert ends[2].text.startswith("1008")
    assert requests.get(user.stream_url, headers={"Authorization": signed},
                        timeout=10).status_code == 401


def test_websocket_sends_counts_at_once_then_every_change(user):
    ws = WsStream(f"{user.ws_url}?ticket={user.ticket()}",
                  ["Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"])
    try:
        assert "sec-websocket-extensions" not in ws.handshake_headers  # no compression
        first = ws.next()
        assert first.etag == user.poll().headers["ETag"]
        user.receive_message()
        second = ws.next()
        assert second.counts["total"] == 1 and second.etag != first.etag
        wait_until(lambda: ws.pings >= 1, timeout=10, what="a ping")
    finally:
        ws.close()


def test_websocket_resumes_with_etag(user):
    etag = user.poll().headers["ETag"]
    ws = WsStream(f"{user.ws_url}?etag={etag}", [f"Authorization: {user.auth['Authorization']}"])
    try:
        user.receive_message()
        event = ws.next()  # the first frame is the change: nothing was resent
        assert event.counts["total"] == 1 and event.etag != etag
    finally:
        ws.close()


def test_websocket_answers_a_client_ping_text_frame_with_pong(user):
    """Browsers and React Native cannot see protocol pings: their clients send a text `ping` to
    prove a socket is alive (after sleep, on foreground), and the server answers `pong`."""
    ws = websocket.create_connection(f"{user.ws_url}?ticket={user.ticket()}", timeout=10)

    def next_text(seconds: float = 5) -> str:
        """The next text frame within `seconds` (the server's pings, answered, do not count)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            opcode, frame = ws.recv_data_frame(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_PING:
                ws.pong(frame.data)
            elif opcode == websocket.ABNF.OPCODE_TEXT:
                return frame.data.decode()
        raise AssertionError(f"no text frame within {seconds}s")

    try:
        assert json.loads(next_text())["counts"]["user_id"] == user.id  # the counts, first
        for _ in range(2):  # every ping is answered, not just the first
            ws.send("ping")
            assert next_text() == "pong"
        ws.send("hello")  # any other text is still ignored: the next frame is the change
        user.receive_message()
        assert json.loads(next_text())["counts"]["total"] == 1
    finally:
        ws.close()


def test_websocket_url_without_upgrade_is_426(user):
    response = requests.get(user.ws_url.replace("ws", "http", 1), headers=user.auth, timeout=10)
    assert response.status_code == 426
    assert response.headers["Content-Type"] == "application/problem+json"


def test_a_new_stream_is_subscribed_at_once(live, tokens):
    """A stream's SUBSCRIBE is written as it registers, not when the subscriber next looks up
    from its socket (up to READ_SLICE, 1 s): a bump made as soon as the first counts arrive
    reaches each new stream in a small part of that (heartbeats are 60 s, so no re-check helps)."""
    server = live(COUNTS_STREAM_HEARTBEAT="60")
    service = tokens.service()

    def new_stream() -> tuple[str, SseStream]:
        user = str(new_user())
        return user, SseStream(f"{server.url}/v1/users/{user}/unread-counts/stream",
                               tokens.user(user))

    def bump_to_event_seconds() -> float:
        user, stream = new_stream()
        try:
            stream.next()
            started = time.monotonic()
            bumped = requests.post(f"{server.url}/v1/markers/bump", json={"user_ids": [user]},
                                   headers=service, timeout=10)
            assert bumped.status_code == 200
            stream.next(timeout=10)
            return time.monotonic() - started
        finally:
            stream.close()

    _, keeper = new_stream()
    try:
        keeper.next()  # the subscriber is up: each stream below is queued on a running one
        delays = sorted(bump_to_event_seconds() for _ in range(9))
    finally:
        keeper.close()
    print(f"bump to event on a new stream (s): {[round(d, 3) for d in delays]}")
    assert statistics.median(delays) < READ_SLICE / 4, delays


def test_past_max_streams_a_new_stream_gets_503_with_jittered_retry_after(live, tokens):
    user = User(live(COUNTS_MAX_STREAMS="1"), tokens)
    first = SseStream(user.stream_url, user.auth)
    try:
        assert first.status == 200
        refused = [SseStream(user.stream_url, user.auth) for _ in range(8)]
        assert {r.status for r in refused} == {503}
        retry_after = {int(r.headers["Retry-After"]) for r in refused}
        assert all(5 <= seconds <= 15 for seconds in retry_after)
        assert len(retry_after) > 1  # jittered: refused clients do not all return together
        etag = user.poll().headers["ETag"]
        held = requests.get(f"{user.url}/v1/users/{user.id}/unread-counts", timeout=10,
                            headers={**user.auth, "If-None-Match": etag, "Prefer": "wait=20"})
        assert held.status_code == 304  # at once: degraded to a plain poll
        assert "Preference-Applied" not in held.headers
    finally:
        first.close()


def test_presence_follows_open_streams_not_long_polls(user, redis_client):
    """A stream that names no device: present as "*" (every device of its user, under
    COUNTS_PUSH_PRESENCE=user)."""
    assert presence.live_users(redis_client, [user.id]) == set()
    stream = SseStream(user.stream_url, user.auth)
    stream.next()
    wait_until(lambda: presence.live_users(redis_client, [user.id]) == {user.id},
               what="presence to appear")
    stream.close()
    # A client that hung up is seen at the next write (the heartbeat): then it is gone.
    wait_until(lambda: presence.live_users(redis_client, [user.id]) == set(), timeout=10,
               what="presence to go")


def test_a_stream_naming_its_device_makes_that_device_present(user, redis_client):
    """?device_id= on SSE and on a WebSocket: presence per device (COUNTS_PUSH_PRESENCE)."""
    phone, laptop = str(uuid.uuid4()), str(uuid.uuid4())
    sse = SseStream(f"{user.stream_url}?device_id={phone}", user.auth)
    ws = websocket.create_connection(f"{user.ws_url}?ticket={user.ticket()}&device_id={laptop}",
                                     timeout=10)
    try:
        sse.next()
        wait_until(lambda: presence.live_devices(redis_client, [user.id]) == {user.id: {phone, laptop}},
                   what="both devices to be present")
    finally:
        sse.close()
        ws.close()
    wait_until(lambda: presence.live_devices(redis_client, [user.id]) == {}, timeout=10,
               what="presence to go")


@pytest.mark.parametrize("device_id", ["phone", "1234"])
def test_a_device_id_that_is_not_a_uuid_is_a_400_problem(user, device_id):
    stream = SseStream(f"{user.stream_url}?device_id={device_id}", user.auth)
    assert stream.status == 400
    assert stream.headers["Content-Type"] == "application/problem+json"


def test_presence_of_a_killed_worker_lapses_within_two_heartbeats(user, server, redis_client):
    stream = SseStream(user.stream_url, user.auth)
    stream.next()
    wait_until(lambda: presence.live_users(redis_client, [user.id]) == {user.id})
    worker = next(iter(server_workers(server)))
    os.kill(worker, signal.SIGKILL)
    killed = time.monotonic()
    wait_until(lambda: presence.live_users(redis_client, [user.id]) == set(), timeout=10,
               what="a dead worker's presence to lapse")
    assert time.monotonic() - killed <= 2 * HEARTBEAT + 2
    stream.close()


def server_workers(server: Gunicorn) -> set[int]:
    import psutil

    return {child.pid for child in psutil.Process(server.process.pid).children()}


def test_sigterm_closes_streams_over_a_few_seconds_with_jittered_retry(live, tokens):
    server = live(COUNTS_STREAM_SHUTDOWN_SECONDS="2")
    users = [User(server, tokens) for _ in range(6)]
    streams = [SseStream(u.stream_url, u.auth) for u in users]
    sockets = [WsStream(f"{u.ws_url}?ticket={u.ticket()}") for u in users[:3]]
    for stream in streams + sockets:
        assert stream.next().kind == "counts"
    server.process.send_signal(signal.SIGTERM)
    hints = [int(s.next(timeout=15, kinds=("retry",)).text) for s in streams]
    assert all(s.next(timeout=15).kind == "end" for s in streams)
    closes = [s.next(timeout=15).text for s in sockets]
    assert all(close.startswith("1012 retry in ") for close in closes), closes
    # Jittered: each client told its own delay (two of six may draw the same millisecond, 0.7 %).
    assert len(set(hints)) >= len(hints) - 1
    assert all(1000 <= hint <= 3000 for hint in hints)
    # Within the spread and a margin, not graceful_timeout (20 s): a connection whose stream the
    # shutdown ended is closed, not kept alive for a next request.
    assert server.process.wait(timeout=10) == 0
    server.stop()


def test_the_ticket_never_reaches_the_logs(live, tokens, tmp_path):
    server = live()
    user = User(server, tokens)
    ticket = user.ticket()
    stream = SseStream(f"{user.stream_url}?ticket={ticket}")
    stream.next()
    stream.close()
    SseStream(f"{user.stream_url}?ticket={ticket}")  # refused: a reused ticket
    server.stop()
    log = (tmp_path / "gunicorn-0.log").read_text()
    assert "unread-counts/stream" in log
    assert ticket not in log


def test_opening_streams_counts_against_the_rate_limit(live, tokens):
    """Opening a stream (by token or by ticket) is a request like a poll; events are not."""
    user = User(live(COUNTS_RATE_LIMIT="3"), tokens)
    first = SseStream(user.stream_url, user.auth)  # request 1 (the conversation was a service's)
    try:
        assert first.status == 200
        ticket = user.ticket()  # request 2
        second = SseStream(f"{user.stream_url}?ticket={ticket}")  # request 3
        assert second.status == 200
        for _ in range(3):
            user.receive_message()  # the friend's requests, not the user's
        assert [first.next().counts["total"] for _ in range(4)][-1] == 3  # events are free
        third = SseStream(user.stream_url, user.auth)  # request 4: over the limit
        assert third.status == 429
        assert third.headers["Retry-After"]
        second.close()
    finally:
        first.close()
