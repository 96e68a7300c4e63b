"""The dispatcher's rules: coalescing, presence, retries and backoff, gone devices, max age,
hung providers, several dispatchers at once, and tokens kept out of the logs."""

import concurrent.futures
import itertools
import logging
import time

from counts.markers import presence
from counts.observability.logs import JsonFormatter
from tests.support.api import Api, new_user
from tests.support.environment import settings_for
from tests.support.postgres import true_total
from tests.support.push import devices_of, queue_empty, sent, subscribe
from tests.support.pushfakes.server import FakeServer
from tests.support.pushfakes.webpush import PushService
from tests.support.services import wait_until


def test_a_burst_becomes_at_most_two_pushes_ending_on_the_latest_total(push_api, push_service,
                                                                        dispatchers, pg):
    alice, bob = new_user(), new_user()
    conversation = push_api.conversation(alice, bob)
    browser = subscribe(push_api, push_service, bob)
    window = 2.0
    dispatchers(COUNTS_PUSH_COALESCE=window)
    started = time.monotonic()
    for n in range(6):
        assert push_api.send(conversation, alice, f"burst {n}").status_code == 201
    burst = time.monotonic() - started  # well under a window, unless the machine is loaded
    wait_until(lambda: queue_empty(pg) and browser.messages(), what="the burst to be pushed")
    totals = [message["total"] for message in browser.messages()]
    # The first at once, the rest at the window's end: one more per window the burst outlasted.
    assert len(totals) <= 2 + int(burst / window)
    assert totals[-1] == 6


def test_deferrals_from_two_rounds_come_due_together_at_the_windows_end(push_api, push_service,
                                                                         push_config, pg):
    """Jobs written while a round was still sending are deferred to its window's end: exactly
    there, so that two rounds' deferrals go as one push (a third push of the same total, once)."""
    from counts.push.worker import make_dispatcher

    alice, bob = new_user(), new_user()
    conversation = push_api.conversation(alice, bob)
    browser = subscribe(push_api, push_service, bob)
    dispatcher = make_dispatcher(settings_for({**push_config, "COUNTS_PUSH_COALESCE": 30}))
    try:
        push_api.send(conversation, alice)
        assert dispatcher.run_once() == 1
        for _ in range(2):
            push_api.send(conversation, alice)
            with pg.cursor() as cur:  # as if written before the first round recorded its window
                cur.execute("UPDATE push_jobs SET due_at = clock_timestamp()"
                            " WHERE user_id = %s AND device_id IS NULL", (str(bob),))
            assert dispatcher.run_once() == 1
        with pg.cursor() as cur:
            cur.execute("SELECT j.due_at = d.hold_until FROM push_jobs j"
                        " JOIN push_devices d ON d.id = j.device_id WHERE j.user_id = %s", (str(bob),))
            assert cur.fetchall() == [(True,), (True,)]
        assert len(browser.received()) == 1
    finally:
        dispatcher.close()
        dispatcher.db.close()


def live_on(redis_client, user, *devices) -> None:
    """As a worker's feed writes it: streams of `user` open on these devices (None: unnamed)."""
    presence.mark_live(redis_client, "test-worker", [(str(user), d) for d in devices], time.time() + 60)


def test_a_live_stream_silences_the_alerts_of_its_own_device_only(push_api, push_service,
                                                                  dispatchers, redis_client):
    """A desktop tab left open must not silence the phone in a pocket (COUNTS_PUSH_PRESENCE=device)."""
    alice, bob = new_user(), new_user()
    conversation = push_api.conversation(alice, bob)
    desktop, phone = subscribe(push_api, push_service, bob), subscribe(push_api, push_service, bob)
    live_on(redis_client, bob, desktop.device_id, None)  # a stream naming no device silences none
    dispatchers()
    push_api.send(conversation, alice, "seen live")
    wait_until(lambda: desktop.messages() and phone.messages(), what="both pushes")
    assert desktop.messages()[0]["alert"] is False and desktop.messages()[0]["total"] == 1
    assert desktop.received()[0].headers["urgency"] == "low"
    assert phone.messages()[0]["alert"] is True


def test_the_per_user_rule_silences_every_device_of_a_live_user(push_api, push_service,
                                                                dispatchers, redis_client):
    """COUNTS_PUSH_PRESENCE=user (Slack's rule): active on the desktop, no alerts on the phone."""
    alice, bob = new_user(), new_user()
    conversation = push_api.conversation(alice, bob)
    desktop, phone = subscribe(push_api, push_service, bob), subscribe(push_api, push_service, bob)
    live_on(redis_client, bob, None)
    dispatchers(COUNTS_PUSH_PRESENCE="user")
    push_api.send(conversation, alice, "seen live")
    wait_until(lambda: desktop.messages() and phone.messages(), what="both pushes")
    assert [b.messages()[0]["alert"] for b in (desktop, phone)] == [False, False]
    assert phone.messages()[0]["total"] == 1


def test_a_gone_subscription_is_forgotten_and_counted(push_api, push_service, dispatchers, pg):
    alice, bob = new_user(), new_user()
    conversation = push_api.conversation(alice, bob)
    gone_410, gone_404 = subscribe(push_api, push_service, bob), subscribe(push_api, push_service, bob)
    push_service.gone(gone_410.id)
    push_service.gone(gone_404.id, status=404)
    before = sent("gone")
    dispatchers()
    push_api.send(conversation, alice)
    wait_until(lambda: devices_of(pg, bob) == 0, what="both devices to be forgotten")
    assert sent("gone") - before == 2
    assert queue_empty(pg)


def test_4xx_other_than_gone_keeps_the_device(push_api, push_service, dispatchers, pg):
    alice, bob = new_user(), new_user()
    conversation = push_api.conversation(alice, bob)
    subscribe(push_api, push_service, bob)
    push_service.trouble.fail(403)  # e.g. a VAPID key rotated: our mistake, not a gone device
    before = sent("failed")
    dispatchers()
    push_api.send(conversation, alice)
    wait_until(lambda: sent("failed") > before and queue_empty(pg), what="the failure")
    assert devices_of(pg, bob) == 1


def test_retry_after_is_honoured_then_the_push_goes_through(push_api, push_service, dispatchers, pg):
    alice, bob = new_user(), new_user()
    conversation = push_api.conversation(alice, bob)
    browser = subscribe(push_api, push_service, bob)
    attempts = []
    push_service.trouble.fail(503, retry_after="1", seconds=1.5)
    original = push_service.trouble.intervene

    async def recording(send):
        attempts.append(time.monotonic())
        return await original(send)

    push_service.trouble.intervene = recording
    before = sent("retried")
    dispatchers()
    push_api.send(conversation, alice)
    wait_until(browser.messages, timeout=20, what="the push after the outage")
    assert browser.messages()[-1]["total"] == 1
    assert sent("retried") - before == len(attempts) - 1 >= 1
    gaps = [later - earlier for earlier, later in itertools.pairwise(attempts)]
    assert all(gap >= 1.0 for gap in gaps), gaps  # never earlier than Retry-After asked


def test_no_push_after_max_age_and_the_expiry_is_counted(push_api, push_service, dispatchers, pg):
    alice, bob = new_user(), new_user()
    conversation = push_api.conversation(alice, bob)
    browser = subscribe(push_api, push_service, bob)
    push_service.trouble.fail(503, seconds=3600)  # no Retry-After: our own backoff
    before = sent("expired")
    dispatchers(COUNTS_PUSH_MAX_AGE=1.5, PUSH_RETRY_BASE=0.2)
    push_api.send(conversation, alice)
    wait_until(lambda: sent("expired") > before and queue_empty(pg), what="the push to expire")
    refused = push_service.trouble.requests_refused
    assert 1 <= refused <= 6  # backoff: 0.1-0.2, 0.2-0.4, 0.4-0.8 s... within 1.5 s
    push_service.trouble.heal()
    assert browser.messages() == []
    assert devices_of(pg, bob) == 1


def test_a_hung_push_service_does_not_hold_the_others(app_factory, push_config, push_service,
                                                      dispatchers, pki, tokens, pg):
    healthy = PushService()
    server = FakeServer(healthy, pki).start()
    healthy.origin = server.url
    both = (push_service.server.host, server.host)
    push_api = Api(app_factory(**{**push_config, "COUNTS_WEBPUSH_ALLOWED_HOSTS": both}).test_client(),
                   tokens)
    try:
        alice, bob, carol = new_user(), new_user(), new_user()
        conversation = push_api.conversation(alice, bob, carol)
        hung_browser = subscribe(push_api, push_service, bob)
        carols = subscribe(push_api, healthy, carol)
        push_service.trouble.hang()
        dispatcher = dispatchers(COUNTS_PUSH_TIMEOUT=0.5, COUNTS_WEBPUSH_ALLOWED_HOSTS=both)
        push_api.send(conversation, alice, "one")
        wait_until(carols.messages, what="carol's push")
        push_api.send(conversation, alice, "two")  # the hung host is backing off by now
        wait_until(lambda: len(carols.messages()) == 2 and carols.messages()[-1]["total"] == 2,
                   timeout=10, what="carol's second push, not held by the hung host")
        assert dispatcher.hosts.wait(push_service.server.host, time.time()) > 0
        push_service.trouble.heal()
        wait_until(lambda: hung_browser.messages() and hung_browser.messages()[-1]["total"] == 2,
                   timeout=20, what="bob's push once his push service answers again")
    finally:
        server.stop()


def test_two_dispatchers_and_concurrent_writers_end_on_each_users_true_total(
        push_api, push_service, dispatchers, pg, tokens):
    alice = new_user()
    users = [new_user() for _ in range(4)]
    conversations = [push_api.conversation(alice, user) for user in users]
    browsers = {user: subscribe(push_api, push_service, user) for user in users}
    dispatchers(COUNTS_PUSH_COALESCE=0.05)
    dispatchers(COUNTS_PUSH_COALESCE=0.05)

    def traffic(index: int) -> None:
        user, conversation = users[index % 4], conversations[index % 4]
        for n in range(8):
            push_api.send(conversation, alice, f"m{n}")
            if n % 3 == 2:
                push_api.read(conversation, user)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(traffic, range(8)))
    for user, browser in browsers.items():
        wait_until(lambda u=user, b=browser: queue_empty(pg) and b.messages()
                   and b.messages()[-1]["total"] == true_total(pg, u),
                   timeout=20, what=f"{user}'s last push to carry the true total")


class Lines(logging.Handler):
    """Every log record of the test, formatted as the service formats them."""

    def __init__(self):
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(self.format(record))


def test_tokens_never_reach_the_logs(push_api, push_service, dispatchers, pg):
    lines, root = Lines(), logging.getLogger()
    level = root.level
    root.addHandler(lines)
    root.setLevel(logging.DEBUG)  # COUNTS_LOG_LEVEL=debug must not leak them either
    alice, bob = new_user(), new_user()
    conversation = push_api.conversation(alice, bob)
    kept, gone = subscribe(push_api, push_service, bob), subscribe(push_api, push_service, bob)
    push_service.gone(gone.id)
    dispatchers()
    push_api.send(conversation, alice)
    wait_until(lambda: kept.messages() and devices_of(pg, bob) == 1, what="the pushes")
    root.removeHandler(lines)
    root.setLevel(level)
    logs = "\n".join(lines.lines)
    assert "sha256:" in logs  # the gone device is logged, by its hint
    for subscriber in (kept, gone):
        assert subscriber.id not in logs
        assert subscriber.subscription()["keys"]["auth"] not in logs


def test_a_second_dispatcher_skips_a_user_whose_push_is_in_flight(push_app, push_api, push_service, pg):
    from counts.push.worker import make_dispatcher

    alice, bob = new_user(), new_user()
    conversation = push_api.conversation(alice, bob)
    browser = subscribe(push_api, push_service, bob)
    settings = push_app.extensions["counts"].settings
    first, second = make_dispatcher(settings), make_dispatcher(settings)
    release = push_service.trouble.hold()
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            push_api.send(conversation, alice)
            first_round = pool.submit(first.run_once)
            wait_until(browser.received, what="the first round's push to be in flight")
            push_api.send(conversation, alice)  # a job the first round did not claim
            # Pushing bob now could deliver total 2 before the held total 1: the round skips him.
            assert pool.submit(second.run_once).result(timeout=20) == 0
            assert len(browser.received()) == 1
            release.set()
            assert first_round.result(timeout=20) == 1
        # The second message waits out bob's coalescing window, then goes with the latest total.
        wait_until(lambda: second.run_once() >= 0 and len(browser.received()) == 2,
                   what="the second push")
        assert [message["total"] for message in browser.messages()] == [1, 2]
    finally:
        release.set()
        for dispatcher in (first, second):
            dispatcher.close()
            dispatcher.db.close()
