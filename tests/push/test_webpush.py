"""Web Push end to end: the test is the browser (it subscribes, receives, decrypts, checks VAPID)."""

import time

from counts.push.vapid import b64url
from tests.support.api import Api, assert_problem, new_user
from tests.support.push import VAPID_SUBJECT, devices_of, sent, subscribe, vapid_claims
from tests.support.pushfakes.webpush import Subscriber
from tests.support.services import wait_until


def test_a_message_reaches_the_subscriber_encrypted_and_signed_and_a_read_clears_the_badge(
        push_api, push_service, dispatchers):
    alice, bob = new_user(), new_user()
    conversation = push_api.conversation(alice, bob)
    bobs_browser = subscribe(push_api, push_service, bob)
    dispatchers()

    assert push_api.send(conversation, alice, "Lunch?").status_code == 201
    wait_until(lambda: len(bobs_browser.messages()) == 1, what="the alert push")
    alert = bobs_browser.received()[0]
    assert bobs_browser.messages()[0] == {
        "type": "unread", "user_id": str(bob), "total": 1, "unread_conversations": 1,
        "badge": 1, "mentions": 0, "conversation_id": conversation, "alert": True}
    assert b"Lunch?" not in alert.body  # encrypted, and never the message body anyway
    public_key = push_api.client.get("/v1/push/webpush-key").get_json()["public_key"]
    claims = vapid_claims(alert, public_key, push_service.origin)
    assert claims["sub"] == VAPID_SUBJECT
    assert time.time() < claims["exp"] <= time.time() + 24 * 3600
    assert alert.headers["content-encoding"] == "aes128gcm"
    assert alert.headers["urgency"] == "normal"
    assert alert.headers["topic"] == "unread"
    assert 23 * 3600 < int(alert.headers["ttl"]) <= 24 * 3600

    # Bob reads on his phone: the browser's badge must clear.
    assert push_api.read(conversation, bob).status_code == 200
    wait_until(lambda: len(bobs_browser.messages()) == 2, what="the badge-only push")
    assert bobs_browser.messages()[1] == {
        "type": "unread", "user_id": str(bob), "total": 0, "unread_conversations": 0,
        "badge": 0, "mentions": 0, "conversation_id": conversation, "alert": False}
    assert bobs_browser.received()[1].headers["urgency"] == "low"
    assert push_service.rejected == []


def test_the_sender_gets_no_alert_and_users_without_devices_get_no_job(push_api, push_service,
                                                                         dispatchers, pg):
    alice, bob, carol = new_user(), new_user(), new_user()
    conversation = push_api.conversation(alice, bob, carol)
    alices_browser = subscribe(push_api, push_service, alice)
    bobs_browser = subscribe(push_api, push_service, bob)
    assert push_api.send(conversation, alice, "hi").status_code == 201
    with pg.cursor() as cur:
        cur.execute("SELECT user_id::text, alert FROM push_jobs ORDER BY user_id")
        assert cur.fetchall() == [(str(bob), True)]  # not alice (sent it), not carol (no device)
    dispatchers()
    wait_until(lambda: len(bobs_browser.messages()) == 1, what="bob's push")
    assert alices_browser.messages() == []


def test_a_push_job_exists_exactly_when_its_write_committed(push_api, push_service, pg, monkeypatch):
    from counts.bumps import outbox

    alice, bob = new_user(), new_user()
    conversation = push_api.conversation(alice, bob)
    subscribe(push_api, push_service, bob)
    real = outbox.push_sql.enqueue_jobs

    def enqueue_then_fail(*args):
        real(*args)
        raise RuntimeError("the write fails after its push job was written")

    monkeypatch.setattr(outbox.push_sql, "enqueue_jobs", enqueue_then_fail)
    assert push_api.send(conversation, alice).status_code == 500
    with pg.cursor() as cur:
        cur.execute("SELECT count(*) FROM push_jobs")
        assert cur.fetchone()[0] == 0  # rolled back with the message
        cur.execute("SELECT count(*) FROM messages")
        assert cur.fetchone()[0] == 0
    monkeypatch.setattr(outbox.push_sql, "enqueue_jobs", real)
    assert push_api.send(conversation, alice).status_code == 201
    with pg.cursor() as cur:
        cur.execute("SELECT user_id::text, alert, conversation_id::text FROM push_jobs")
        assert cur.fetchall() == [(str(bob), True, conversation)]


def resubscribe(push_api, old: Subscriber, new: Subscriber, auth: str | None = None):
    """What the JS service-worker module sends on pushsubscriptionchange (no bearer token)."""
    old_json = old.subscription()
    return push_api.client.post("/v1/push/webpush/resubscribe", json={
        "old": {"endpoint": old_json["endpoint"], "auth": auth or old_json["keys"]["auth"]},
        "subscription": new.subscription()})


def test_pushsubscriptionchange_replaces_the_subscription_authorised_by_the_old_one(
        push_api, push_service, dispatchers, pg):
    alice, bob = new_user(), new_user()
    conversation = push_api.conversation(alice, bob)
    old = subscribe(push_api, push_service, bob)
    key = push_api.client.get("/v1/push/webpush-key").get_json()["public_key"]
    new = Subscriber(push_service, push_service.origin, key)
    replaced = resubscribe(push_api, old, new)
    assert replaced.status_code == 200
    assert replaced.get_json() == {"device_id": old.device_id}  # the same device, and the same user
    dispatchers()
    push_api.send(conversation, alice)
    wait_until(new.messages, what="the push at the new subscription")
    assert new.messages()[0]["total"] == 1 and old.received() == []
    assert devices_of(pg, bob) == 1
    # The old subscription proves nothing any more: it has been replaced.
    assert resubscribe(push_api, old, Subscriber(push_service, push_service.origin, key)).status_code == 403


def test_a_resubscription_without_the_old_auth_secret_is_refused(push_api, push_service, pg):
    bob = new_user()
    old = subscribe(push_api, push_service, bob)
    key = push_api.client.get("/v1/push/webpush-key").get_json()["public_key"]
    new = Subscriber(push_service, push_service.origin, key)
    wrong = resubscribe(push_api, old, new, auth=b64url(b"0123456789abcdef"))
    assert_problem(wrong, 403)
    unknown = Subscriber(push_service, push_service.origin, key)  # never registered
    assert_problem(resubscribe(push_api, unknown, new), 403)
    no_old = push_api.client.post("/v1/push/webpush/resubscribe", headers=push_api.tokens.user(bob),
                                  json={"subscription": new.subscription()})
    assert_problem(no_old, 422)  # a user's bearer token is not what authorises it
    with pg.cursor() as cur:
        cur.execute("SELECT token FROM push_devices WHERE user_id = %s", (str(bob),))
        assert cur.fetchall() == [(old.endpoint,)]


def test_an_alerts_only_push_service_never_gets_a_badge_only_push(
        app_factory, push_config, push_service, tokens, dispatchers):
    """Safari revokes a subscription after three pushes that show nothing: its push service
    (COUNTS_WEBPUSH_ALERTS_ONLY_HOSTS, web.push.apple.com by default) gets alerts only."""
    config = {**push_config, "COUNTS_WEBPUSH_ALERTS_ONLY_HOSTS": push_service.server.host}
    api = Api(app_factory(**config).test_client(), tokens)
    alice, bob = new_user(), new_user()
    conversation = api.conversation(alice, bob)
    safari = subscribe(api, push_service, bob)
    withheld = sent("withheld")
    dispatchers(**config)
    api.send(conversation, alice)
    wait_until(safari.messages, what="the alert")
    api.read(conversation, bob)
    wait_until(lambda: sent("withheld") - withheld == 1, what="the badge-only push withheld")
    api.send(conversation, alice)
    wait_until(lambda: len(safari.messages()) == 2, what="the next alert")
    assert [m["alert"] for m in safari.messages()] == [True, True]
