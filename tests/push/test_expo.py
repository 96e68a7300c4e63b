"""Expo's push service against the local fake (tests/support/pushfakes/expo.py): registration,
the message, batches of at most 100 (gzipped), the access token, tickets, receipts and what
their errors prune, retries, and the send rate shared through Redis."""

import pytest
from prometheus_client import REGISTRY

from counts.markers import sendrate
from counts.push.receipts import KEPT_FOR
from counts.push.worker import make_dispatcher
from tests.support.api import Api, new_user
from tests.support.environment import settings_for
from tests.support.push import devices_of, queue_empty, register_expo, sent
from tests.support.services import wait_until


@pytest.fixture
def expo_api(app_factory, expo_config, tokens):
    return Api(app_factory(**expo_config).test_client(), tokens)


@pytest.fixture
def expo_dispatcher(dispatchers, expo_config):
    return lambda **overrides: dispatchers(**{**expo_config, **overrides})


@pytest.fixture
def one_round(expo_config):
    """A dispatcher driven round by round by the test (no thread): run_once, receipts.check_now."""
    made = []

    def make(**overrides):
        dispatcher = make_dispatcher(settings_for({**expo_config, **overrides}))
        made.append(dispatcher)
        return dispatcher

    yield make
    for dispatcher in made:
        dispatcher.close()
        dispatcher.db.close()


def receipt_errors(error: str) -> float:
    return REGISTRY.get_sample_value("counts_push_receipt_errors_total",
                                     {"provider": "expo", "error": error}) or 0.0


def tickets_of(pg, device_id) -> int:
    with pg.cursor() as cur:
        cur.execute("SELECT count(*) FROM push_tickets WHERE device_id = %s", (str(device_id),))
        return cur.fetchone()[0]


@pytest.mark.parametrize("token", ["ExponentPushToken[xxxxxxxxxxxxxxxxxxxxxx]",
                                   "ExpoPushToken[abc-DEF_123]",
                                   "9f5f5b36-3c6e-4a3f-9f0a-0123456789ab"])
def test_the_documented_token_forms_register_list_and_delete(expo_api, token):
    bob = new_user()
    device_id = register_expo(expo_api, bob, token)
    listed = expo_api.client.get(f"/v1/users/{bob}/devices", headers=expo_api.tokens.user(bob)).get_json()
    assert [(d["device_id"], d["platform"]) for d in listed["devices"]] == [(device_id, "expo")]
    assert token not in str(listed)
    deleted = expo_api.client.delete(f"/v1/users/{bob}/devices/{device_id}",
                                     headers=expo_api.tokens.user(bob))
    assert deleted.status_code == 204


@pytest.mark.parametrize("token", ["ExponentPushToken[]", "ExponentPushToken[a b]", "fcm-token",
                                   "ExponentPushToken[x", "expo:abc", 17])
def test_other_tokens_are_422_problems(expo_api, token):
    bob = new_user()
    response = expo_api.client.post(f"/v1/users/{bob}/devices", headers=expo_api.tokens.user(bob),
                                    json={"platform": "expo", "token": token})
    assert response.status_code == 422
    assert response.content_type == "application/problem+json"


def test_an_alert_then_a_badge_with_the_access_token(expo_api, expo, expo_dispatcher):
    alice, bob = new_user(), new_user()
    conversation = expo_api.conversation(alice, bob)
    token = expo.device()
    register_expo(expo_api, bob, token)
    expo_dispatcher()
    expo_api.send(conversation, alice, "Lunch at noon?")
    wait_until(lambda: expo.sent, what="the alert")
    alert = expo.sent[0].message
    assert alert["to"] == token
    assert alert["data"] == {"type": "unread", "user_id": str(bob), "total": 1, "badge": 1, "mentions": 0,
                             "unread_conversations": 1, "conversation_id": conversation, "alert": True}
    assert (alert["title"], alert["body"], alert["badge"]) == ("New message", "1 unread", 1)
    assert (alert["sound"], alert["priority"], alert["channelId"]) == ("default", "high", "messages")
    assert 23 * 3600 < alert["ttl"] <= 24 * 3600
    assert "Lunch" not in str(alert)
    expo_api.read(conversation, bob)  # on another device: the badge must clear
    wait_until(lambda: len(expo.sent) == 2, what="the badge-only push")
    badge = expo.sent[1].message
    assert badge["badge"] == 0 and badge["data"]["alert"] is False and badge["priority"] == "normal"
    assert not {"title", "body", "sound", "channelId"} & set(badge)
    assert {r.authorization for r in expo.requests} == {f"Bearer {expo.access_token}"}
    assert expo.errors == []


def test_without_the_access_token_expo_refuses_and_no_device_is_deleted(expo_api, expo, expo_dispatcher, pg):
    alice, bob = new_user(), new_user()
    conversation = expo_api.conversation(alice, bob)
    register_expo(expo_api, bob, expo.device())
    before = receipt_errors("UNAUTHORIZED")
    expo_dispatcher(COUNTS_EXPO_ACCESS_TOKEN="")
    expo_api.send(conversation, alice)
    wait_until(lambda: receipt_errors("UNAUTHORIZED") > before and queue_empty(pg), what="the refusal")
    assert [status for status, _ in expo.errors] == [401]
    assert devices_of(pg, bob) == 1 and expo.sent == []


def test_a_round_sends_batches_of_at_most_100_gzipped(expo_api, expo, one_round, pg):
    alice = new_user()
    users = [new_user() for _ in range(150)]
    conversation = expo_api.conversation(alice, *users)
    for user in users:
        register_expo(expo_api, user, expo.device())
    expo_api.send(conversation, alice)
    dispatcher = one_round(COUNTS_PUSH_BATCH=200)
    assert dispatcher.run_once() == 150
    sends = [r for r in expo.requests if r.path.endswith("/send")]
    assert sorted(r.items for r in sends) == [50, 100]
    assert all(r.gzipped for r in sends)
    assert len(expo.sent) == 150 and queue_empty(pg)
    with pg.cursor() as cur:
        cur.execute("SELECT count(*) FROM push_tickets WHERE provider = 'expo'"
                    " AND id = ANY(%s)", ([s.ticket for s in expo.sent],))
        assert cur.fetchone()[0] == 150


def test_a_ticket_error_device_not_registered_removes_the_device_at_once(expo_api, expo, expo_dispatcher, pg):
    alice, bob = new_user(), new_user()
    conversation = expo_api.conversation(alice, bob)
    register_expo(expo_api, bob, "ExponentPushToken[uninstalled-long-ago]")
    before = sent("gone", "expo")
    expo_dispatcher()
    expo_api.send(conversation, alice)
    wait_until(lambda: devices_of(pg, bob) == 0, what="the device to be forgotten")
    assert sent("gone", "expo") - before == 1


def test_receipts_prune_exactly_the_unregistered_device(expo_api, expo, one_round, pg, caplog):
    """Three devices of one user: one Expo later calls unregistered, one whose credentials Expo
    rejects (never deleted), and one delivered; then a token unregistered at the send but
    registered again since is kept."""
    alice, bob = new_user(), new_user()
    conversation = expo_api.conversation(alice, bob)
    gone, misconfigured, fine = expo.device(), expo.device(), expo.device()
    expo.receipt_errors.update({gone: "DeviceNotRegistered", misconfigured: "InvalidCredentials"})
    ids = {token: register_expo(expo_api, bob, token) for token in (gone, misconfigured, fine)}
    expo.receipt_after = 0.5  # receipts exist half a second after the send, as Expo's come later
    dispatcher = one_round(COUNTS_EXPO_RECEIPT_DELAY=0.2)
    expo_api.send(conversation, alice)
    delivered, credentials = sent("delivered", "expo"), receipt_errors("InvalidCredentials")
    assert dispatcher.run_once() == 1 and len(expo.sent) == 3

    def all_read() -> bool:
        dispatcher.receipts.check_now()  # not at the poll interval
        return all(tickets_of(pg, ids[token]) == 0 for token in ids)

    wait_until(all_read, what="every receipt read")
    assert expo.receipts_asked  # asked at least once before the receipts existed, too
    with pg.cursor() as cur:
        cur.execute("SELECT token FROM push_devices WHERE user_id = %s", (str(bob),))
        assert {row[0] for row in cur.fetchall()} == {misconfigured, fine}
    assert sent("delivered", "expo") - delivered == 1
    assert receipt_errors("InvalidCredentials") - credentials == 1
    assert "InvalidCredentials" in caplog.text and misconfigured not in caplog.text  # tokens are secrets

    # The same token unregistered at the send, registered again (a reinstall) before the receipt.
    expo.receipt_errors[misconfigured] = "DeviceNotRegistered"
    expo_api.send(conversation, alice)
    assert dispatcher.run_once() == 1
    again = expo_api.client.post(f"/v1/users/{bob}/devices", headers=expo_api.tokens.user(bob),
                                 json={"platform": "expo", "token": misconfigured})
    assert again.status_code == 200 and again.get_json()["device_id"] == ids[misconfigured]
    gone_before = receipt_errors("DeviceNotRegistered")
    wait_until(all_read, what="the second receipts")
    assert receipt_errors("DeviceNotRegistered") - gone_before == 1
    assert devices_of(pg, bob) == 2


def test_message_rate_exceeded_holds_the_device_back(expo_api, expo, one_round, pg):
    alice, bob = new_user(), new_user()
    conversation = expo_api.conversation(alice, bob)
    token = expo.device()
    expo.receipt_errors[token] = "MessageRateExceeded"
    device_id = register_expo(expo_api, bob, token)
    dispatcher = one_round(COUNTS_EXPO_RECEIPT_DELAY=0.1)
    expo_api.send(conversation, alice)
    assert dispatcher.run_once() == 1

    def read() -> bool:
        dispatcher.receipts.check_now()
        return tickets_of(pg, device_id) == 0

    wait_until(read, what="the receipt")
    with pg.cursor() as cur:
        cur.execute("SELECT extract(epoch FROM hold_until - now()) FROM push_devices WHERE id = %s",
                    (device_id,))
        assert cur.fetchone()[0] > 30  # its next pushes wait a minute, coalesced
    assert devices_of(pg, bob) == 1


def test_a_receipt_never_read_within_24_hours_is_counted_and_dropped(expo_api, expo, one_round, pg):
    alice, bob = new_user(), new_user()
    conversation = expo_api.conversation(alice, bob)
    device_id = register_expo(expo_api, bob, expo.device())
    dispatcher = one_round()
    expo_api.send(conversation, alice)
    assert dispatcher.run_once() == 1 and tickets_of(pg, device_id) == 1
    with pg.cursor() as cur:  # as if every dispatcher had been down for a day
        cur.execute("UPDATE push_tickets SET sent_at = now() - make_interval(secs => %s)"
                    " WHERE device_id = %s", (KEPT_FOR + 60, device_id))
    before = REGISTRY.get_sample_value("counts_push_receipts_unfetched_total", {"provider": "expo"}) or 0
    dispatcher.receipts.check_due()
    assert tickets_of(pg, device_id) == 0 and expo.receipts_asked == []
    after = REGISTRY.get_sample_value("counts_push_receipts_unfetched_total", {"provider": "expo"})
    assert after - before == 1


@pytest.mark.parametrize("status", [429, 503])
def test_429_and_5xx_are_retried_after_retry_after(expo_api, expo, expo_dispatcher, status):
    alice, bob = new_user(), new_user()
    conversation = expo_api.conversation(alice, bob)
    register_expo(expo_api, bob, expo.device())
    expo.trouble.fail(status, retry_after="1", seconds=0.5)
    before = sent("retried", "expo")
    expo_dispatcher()
    expo_api.send(conversation, alice)
    wait_until(lambda: expo.sent, what="the push after the refusal")
    assert sent("retried", "expo") - before == expo.trouble.requests_refused >= 1


def test_the_send_rate_is_shared_through_redis(redis_client):
    """Dispatchers reserving from one window: the seventh 100 waits until the first 100 is more
    than a second (and the margin) old, and so on; a small batch fits where there is room."""
    for key in ("counts:{push-rate:expo-test}", "counts:{push-rate:expo-test}:seq"):
        redis_client.delete(key)
    waits = [sendrate.reserve(redis_client, "expo-test", 100, 600.0) for _ in range(8)]
    assert waits[:6] == [0.0] * 6  # 600 in this second
    window = 1 + sendrate.MARGIN
    assert window - 0.05 < waits[6] <= window and window - 0.05 < waits[7] <= window + 0.001
    assert sendrate.reserve(redis_client, "expo-test", 600, 600.0) >= 2 * window - 0.1


def test_the_fake_enforces_expos_batch_limits():
    from tests.support.pushfakes.expo import ExpoService

    service = ExpoService()
    token = service.device()
    status, _ = service.push([{"to": token}] * 101)
    assert status == 400
    status, _ = service.get_receipts({"ids": ["x"] * 1001})
    assert status == 400
    status, body = service.push([{"to": token, "data": {"x": "y" * 5000}}])
    assert status == 200 and b"MessageTooBig" in body
    fresh = ExpoService()
    fresh.clock = lambda: 1000.0  # seven hundreds within one second
    statuses = [fresh.push([{"to": token}] * 100)[0] for _ in range(7)]
    assert statuses == [200] * 6 + [429]


def test_a_receipt_check_that_fails_keeps_the_tickets_and_the_dispatcher_going(expo_api, expo, one_round,
                                                                              pg, monkeypatch):
    alice, bob = new_user(), new_user()
    conversation = expo_api.conversation(alice, bob)
    device_id = register_expo(expo_api, bob, expo.device())
    dispatcher = one_round(COUNTS_EXPO_RECEIPT_DELAY=0.05)
    expo_api.send(conversation, alice)
    assert dispatcher.run_once() == 1
    provider = dispatcher.providers["expo"]

    def broken(ticket_ids):
        raise ValueError("a bug in reading receipts")

    monkeypatch.setattr(provider, "receipts", broken)
    wait_until(lambda: pg_due(pg, device_id), what="the ticket to be due")
    dispatcher.receipts.check_now()  # logged, not raised
    assert tickets_of(pg, device_id) == 1
    monkeypatch.undo()
    expo_api.send(conversation, alice)
    wait_until(lambda: dispatcher.run_once() == 1, what="the next round")  # after the coalescing window
    assert len(expo.sent) == 2


def pg_due(pg, device_id) -> bool:
    with pg.cursor() as cur:
        cur.execute("SELECT bool_and(check_at <= clock_timestamp()) FROM push_tickets WHERE device_id = %s",
                    (str(device_id),))
        return bool(cur.fetchone()[0])


def test_receipts_a_provider_did_not_answer_for_are_left_alone_for_a_while(expo_api, expo, one_round, pg):
    """A refused (or hung) getReceipts must not cost every dispatcher loop a request: the next
    checks skip the provider, for longer each time, and the tickets wait."""
    alice, bob = new_user(), new_user()
    conversation = expo_api.conversation(alice, bob)
    device_id = register_expo(expo_api, bob, expo.device())
    dispatcher = one_round(COUNTS_EXPO_RECEIPT_DELAY=0.05)
    expo_api.send(conversation, alice)
    assert dispatcher.run_once() == 1
    wait_until(lambda: pg_due(pg, device_id), what="the ticket to be due")
    expo.trouble.fail(503)
    dispatcher.receipts.check_now()
    dispatcher.receipts.check_now()
    assert expo.trouble.requests_refused == 1  # the second check left Expo alone
    assert tickets_of(pg, device_id) == 1
