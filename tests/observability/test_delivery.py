"""The service's own side of delivery latency and battery: a write's commit timed to the frame
each live transport writes (counts_live_latency_seconds), and the requests and wake-ups each way
of staying current costs a device (counts_device_requests_total, counts_wakeups_total)."""

import threading

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from counts.markers import keys
from tests.support.api import new_user
from tests.support.live_clients import long_poll, open_stream
from tests.support.services import Gunicorn, wait_until


@pytest.fixture
def one_worker(server_env, pg, redis_client):
    """One worker: every stream of a user shares its feed subscription, so the test can wait for it."""
    with Gunicorn(server_env, workers=1) as server:
        yield server


def scrape(server) -> dict[tuple, float]:
    """{(name, sorted labels): value} of the operators' /metrics."""
    text = requests.get(f"{server.admin_url}/metrics", timeout=5).text
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def by_transport(found: dict, name: str) -> dict[str, float]:
    """A metric's samples keyed by their transport label."""
    return {dict(labels)["transport"]: value for (metric, labels), value in found.items()
            if metric == name and "transport" in dict(labels)}


def test_a_write_is_timed_to_each_live_transport_and_each_device_request_counted(
        one_worker, tokens, redis_client):
    server = one_worker
    alice, bob = new_user(), new_user()
    service = tokens.service()
    conversation = requests.post(f"{server.url}/v1/conversations", headers=service, timeout=5,
                                 json={"member_ids": [str(alice), str(bob)]}).json()["conversation_id"]
    counts_url = f"{server.url}/v1/users/{bob}/unread-counts"
    etag = requests.get(counts_url, headers=tokens.user(bob), timeout=5).headers["ETag"]
    assert requests.get(counts_url, timeout=5, headers={**tokens.user(bob), "If-None-Match": etag}
                        ).status_code == 304
    sse = open_stream(server.url, bob, tokens.user(bob), "sse")
    ws = open_stream(server.url, bob, tokens.user(bob), "ws")
    held: list[requests.Response] = []
    poller = threading.Thread(target=lambda: held.append(
        long_poll(server.url, bob, tokens.user(bob), etag, wait=20)))
    poller.start()
    try:
        wait_until(lambda: by_transport(scrape(server), "counts_live_connections")
                   == {"live": 2, "long_poll": 1}, what="two streams and a long-poll waiting")
        channel = keys.feed_channel(bob)
        wait_until(lambda: dict(redis_client.pubsub_numsub(channel)).get(channel.encode()) == 1,
                   what="the worker's feed to subscribe to bob")
        sent = requests.post(f"{server.url}/v1/conversations/{conversation}/messages", timeout=5,
                             headers=service, json={"sender_id": str(alice), "body": "hi"})
        assert sent.status_code == 201
        assert sse.next().counts["total"] == 1 and ws.next().counts["total"] == 1
        poller.join(30)
        assert held[0].status_code == 200
        # The frames are written before the latency is observed: wait for all three.
        wait_until(lambda: by_transport(scrape(server), "counts_live_latency_seconds_count")
                   == {"sse": 1, "ws": 1, "long_poll": 1}, what="each transport's latency")
    finally:
        sse.close()
        ws.close()

    found = scrape(server)
    sums = by_transport(found, "counts_live_latency_seconds_sum")
    assert all(0 < seconds < 5 for seconds in sums.values()), sums
    assert by_transport(found, "counts_device_requests_total") == {
        "polling": 2, "long_poll": 1, "live": 2}
    wakeups = by_transport(found, "counts_wakeups_total")
    assert wakeups["polling"] == 2 and wakeups["long_poll"] == 1
    # Each stream: its first bytes and the new counts (the WebSocket's handshake answer too).
    assert wakeups["live"] >= 5
    assert found[("counts_poll_interval_seconds", ())] == 7  # the tests' COUNTS_POLL_INTERVAL
