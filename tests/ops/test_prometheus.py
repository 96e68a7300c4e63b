"""The dashboard and the alert rules against Debian's real Prometheus, scraping the service (two
gunicorn workers, a read replica) and a push dispatcher while devices poll, long-poll, stream and
get pushes: every panel's query and every alert's quantity returns data, and the values are the
ones that traffic implies; the rules load and evaluate without error, and none fires."""

import threading

import pytest
import requests

from ops import alerts, dashboard
from ops import queries as q
from tests.support import ROOT
from tests.support.api import new_user
from tests.support.live_clients import long_poll, open_stream
from tests.support.prometheus import Prometheus
from tests.support.push import worker_env
from tests.support.pushfakes.webpush import Subscriber
from tests.support.services import Gunicorn, free_port, wait_until

RULES = ROOT / "ops" / "prometheus" / "counts-alerts.yml"


@pytest.fixture
def observed(server_env, push_config, database_url, workers, tmp_path):
    """The service (its primary named as its read replica too), a dispatcher with its metrics
    port, and a Prometheus scraping both as the docs say: jobs `counts` and `counts-push`."""
    env = {**worker_env(push_config), **server_env, "DATABASE_REPLICA_URLS": database_url}
    server = Gunicorn(env, log_path=tmp_path / "server.log").start()
    push_port = free_port()  # once the service holds its two
    workers({**worker_env(push_config), "COUNTS_PUSH_METRICS_PORT": str(push_port)})
    prometheus = Prometheus(tmp_path / "prometheus",
                            {"counts": [f"127.0.0.1:{server.admin_port}"],
                             "counts-push": [f"127.0.0.1:{push_port}"]}, (RULES,)).start()
    wait_until(lambda: len(prometheus.values('up{job=~"counts|counts-push"} == 1')) == 2,
               what="prometheus to scrape the service and the dispatcher")
    yield server, prometheus
    prometheus.stop()
    server.stop()


def register_browser(server, push_service, tokens, user) -> Subscriber:
    """A browser of `user` subscribed to the fake Web Push service, registered over HTTP."""
    key = requests.get(f"{server.url}/v1/push/webpush-key", timeout=5).json()["public_key"]
    browser = Subscriber(push_service, push_service.origin, key)
    registered = requests.post(f"{server.url}/v1/users/{user}/devices", timeout=5,
                               headers=tokens.user(user),
                               json={"platform": "webpush", "subscription": browser.subscription()})
    assert registered.status_code == 201, registered.text
    return browser


def test_every_panel_and_alert_returns_data_under_traffic(observed, push_service, tokens):
    server, prometheus = observed
    alice, bob, carol = new_user(), new_user(), new_user()
    service = tokens.service()
    created = requests.post(f"{server.url}/v1/conversations", headers=service, timeout=5,
                            json={"member_ids": [str(alice), str(bob), str(carol)]})
    conversation = created.json()["conversation_id"]
    browser = register_browser(server, push_service, tokens, carol)  # carol is away: pushed to
    counts_url = f"{server.url}/v1/users/{bob}/unread-counts"
    etag = requests.get(counts_url, headers=tokens.user(bob), timeout=5).headers["ETag"]
    stream = open_stream(server.url, bob, tokens.user(bob), "sse")  # bob's laptop

    def message_round(etag: str, unread: int) -> str:
        """bob's phone holds a long-poll (seen by Prometheus) and his laptop streams; alice
        writes; then the phone polls with what it got: 304s. The phone's new ETag."""
        held: list[requests.Response] = []
        poller = threading.Thread(target=lambda: held.append(
            long_poll(server.url, bob, tokens.user(bob), etag, wait=20)))
        poller.start()
        wait_until(lambda: len(prometheus.values(q.LIVE_CONNECTIONS + " > 0")) == 2,
                   what="prometheus to see the long-poll and the stream")
        sent = requests.post(f"{server.url}/v1/conversations/{conversation}/messages", timeout=5,
                             headers=service, json={"sender_id": str(alice), "body": "hi"})
        assert sent.status_code == 201
        event = stream.next()
        assert event.kind == "counts" and event.counts["total"] == unread
        poller.join(30)
        assert held[0].status_code == 200
        for _ in range(5):  # a device that has the news: 304s from Redis alone
            polled = requests.get(counts_url, timeout=5,
                                  headers={**tokens.user(bob), "If-None-Match": held[0].headers["ETag"]})
            assert polled.status_code == 304
        wait_until(lambda: len(browser.messages()) == unread, what="carol's push")
        return held[0].headers["ETag"]

    try:
        etag = message_round(etag, 1)
        # A labelled series is born at its first event, and a rate needs a sample before the
        # increase: the second round is the one the rates see.
        first_304s = q.sel("counts_http_requests_total", q.API, q.COUNTS_ROUTE, 'status="304"')
        wait_until(lambda: prometheus.values(first_304s), what="prometheus to scrape the first 304s")
        message_round(etag, 2)
        # Both scraped since: the API after its tenth 304, the dispatcher after its second push.
        wait_until(lambda: prometheus.values(f"sum({first_304s}) >= 10") and prometheus.values(
            'sum(counts_push_sent_total{job="counts-push",outcome="accepted"}) >= 2'),
            what="prometheus to scrape the second round")

        expressions = dashboard.expressions() + [alert.quantity for alert in alerts.ALERTS]

        def without_data() -> list[str]:
            return [e for e in expressions if not prometheus.values(e)]

        try:
            wait_until(lambda: not without_data(), timeout=30, what="every query to return data")
        except AssertionError as error:
            raise AssertionError(f"{error}; none from: {without_data()}") from None
    finally:
        stream.close()

    assert prometheus.values(q.PUSH_SUCCESS) == [1.0]  # webpush: every push tried was accepted
    assert 0 < prometheus.values(q.NOT_MODIFIED_SHARE)[0] < 1
    live = {s["metric"]["transport"]: float(s["value"][1])
            for s in prometheus.query(q.LIVE_LATENCY[0.99]) if s["value"][1] != "NaN"}
    assert set(live) == {"sse", "long_poll"} and all(0 < v < 5 for v in live.values()), live
    assert 0 < prometheus.values(q.PUSH_LATENCY[0.99])[0] < 10
    per_device = {t: prometheus.values(e) for t, e in q.WAKEUPS_PER_DEVICE.items()}
    assert per_device["polling"] == [3600 / 7]  # the tests' COUNTS_POLL_INTERVAL
    assert all(v and v[0] > 0 for v in per_device.values()), per_device
    assert prometheus.values(q.ERROR_SHARE) == [0.0] and prometheus.values(q.REDIS_ERRORS) == [0.0]

    rules = prometheus.rules()
    assert {rule["name"] for rule in rules} == {alert.name for alert in alerts.ALERTS}
    wait_until(lambda: all(rule["health"] == "ok" for rule in prometheus.rules()),
               what="every rule evaluated")
    assert [rule["name"] for rule in prometheus.rules() if rule["state"] == "firing"] == []
