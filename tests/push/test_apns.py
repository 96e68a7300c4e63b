"""APNs against the local fake (tests/support/pushfakes/apns.py), which enforces Apple's documented rules."""

import time

import pytest

from counts.push.providers import apns as apns_provider
from tests.support.api import Api, new_user
from tests.support.environment import settings_for
from tests.support.push import APNS_TOPIC, devices_of, queue_empty, register_apns, sent
from tests.support.services import wait_until


@pytest.fixture
def apns_api(app_factory, apns_config, tokens):
    return Api(app_factory(**apns_config).test_client(), tokens)


@pytest.fixture
def apns_dispatcher(dispatchers, apns_config):
    return lambda **overrides: dispatchers(**{**apns_config, **overrides})


def test_an_alert_then_a_badge_only_push_over_one_http2_connection(apns_api, apns, apns_dispatcher):
    alice, bob = new_user(), new_user()
    conversation = apns_api.conversation(alice, bob)
    token = apns.device("production", APNS_TOPIC)
    register_apns(apns_api, bob, token)
    apns_dispatcher()
    apns_api.send(conversation, alice, "Lunch?")
    wait_until(lambda: apns.delivered, what="the alert")
    alert = apns.delivered[0]
    assert (alert.environment, alert.token, alert.http_version) == ("production", token, "2")
    assert alert.headers["apns-topic"] == APNS_TOPIC
    assert alert.headers["apns-push-type"] == "alert"
    assert alert.headers["apns-priority"] == "10"
    assert alert.headers["apns-collapse-id"] == "unread"
    assert 23 * 3600 < int(alert.headers["apns-expiration"]) - time.time() <= 24 * 3600
    assert alert.payload["aps"]["badge"] == 1
    assert alert.payload["aps"]["alert"]["loc-key"] == "COUNTS_NEW_MESSAGE"
    assert alert.payload["aps"]["thread-id"] == conversation
    assert alert.payload["counts"] == {"type": "unread", "user_id": str(bob), "total": 1,
                                       "unread_conversations": 1, "badge": 1, "mentions": 0,
                                       "conversation_id": conversation, "alert": True}
    assert "Lunch?" not in str(alert.payload)

    apns_api.read(conversation, bob)
    wait_until(lambda: len(apns.delivered) == 2, what="the badge-only push")
    badge = apns.delivered[1]
    assert badge.payload["aps"] == {"badge": 0}
    assert badge.headers["apns-priority"] == "5"
    assert badge.connection == alert.connection  # the connection was kept open
    assert apns.errors == []
    assert len(apns.token_iats) == 1  # one provider token for both


def test_the_provider_token_is_reused_then_refreshed_after_40_minutes(apns_config, apns):
    settings = settings_for(apns_config)
    provider = apns_provider.from_settings(settings.section(apns_provider.ApnsSettings), settings.push)
    now = [time.time()]
    provider.clock = lambda: now[0]
    try:
        first = provider.provider_token()
        now[0] += 39 * 60
        assert provider.provider_token() == first
        now[0] += 2 * 60
        assert provider.provider_token() != first
    finally:
        provider.close()


def test_an_expired_provider_token_is_replaced_and_the_push_goes_through(apns_api, apns, apns_dispatcher):
    alice, bob = new_user(), new_user()
    conversation = apns_api.conversation(alice, bob)
    register_apns(apns_api, bob, apns.device("production", APNS_TOPIC))
    dispatcher = apns_dispatcher()
    provider = dispatcher.providers["apns"]
    provider.clock = lambda: time.time() - 2 * 3600  # the token it makes first is two hours old
    apns_api.send(conversation, alice)
    wait_until(lambda: apns.errors, what="APNs to refuse the stale token")
    provider.clock = time.time
    wait_until(lambda: apns.delivered, what="the push with a fresh token")
    assert apns.errors[0] == (403, "ExpiredProviderToken")


def test_unregistered_is_gone_and_the_device_forgotten(apns_api, apns, apns_dispatcher, pg):
    alice, bob = new_user(), new_user()
    conversation = apns_api.conversation(alice, bob)
    token = apns.device("production", APNS_TOPIC)
    register_apns(apns_api, bob, token)
    apns.unregister(token)
    before = sent("gone", "apns")
    apns_dispatcher()
    apns_api.send(conversation, alice)
    wait_until(lambda: devices_of(pg, bob) == 0, what="the device to be forgotten")
    assert apns.errors == [(410, "Unregistered")]
    assert sent("gone", "apns") - before == 1


def test_bad_device_token_from_the_wrong_environment_moves_the_device(apns_api, apns, apns_dispatcher, pg):
    alice, bob = new_user(), new_user()
    conversation = apns_api.conversation(alice, bob)
    token = apns.device("sandbox", APNS_TOPIC)  # a development build registered as production
    register_apns(apns_api, bob, token, environment="production")
    apns_dispatcher()
    apns_api.send(conversation, alice)
    wait_until(lambda: apns.delivered, what="the push through sandbox")
    assert apns.delivered[0].environment == "sandbox"
    assert apns.errors == [(400, "BadDeviceToken")]
    wait_until(lambda: queue_empty(pg), what="the round to commit")
    with pg.cursor() as cur:
        cur.execute("SELECT settings->>'environment' FROM push_devices WHERE user_id = %s", (str(bob),))
        assert cur.fetchone()[0] == "sandbox"


def test_bad_device_token_in_both_environments_is_gone(apns_api, apns, apns_dispatcher, pg):
    alice, bob = new_user(), new_user()
    conversation = apns_api.conversation(alice, bob)
    register_apns(apns_api, bob, "cd" * 32)  # known to neither
    apns_dispatcher()
    apns_api.send(conversation, alice)
    wait_until(lambda: devices_of(pg, bob) == 0, what="the device to be forgotten")
    assert apns.errors == [(400, "BadDeviceToken"), (400, "BadDeviceToken")]


def test_another_400_keeps_the_device(apns_api, apns, apns_dispatcher, pg):
    alice, bob = new_user(), new_user()
    conversation = apns_api.conversation(alice, bob)
    token = apns.device("production", "com.example.other-app")
    register_apns(apns_api, bob, token)  # registered under the wrong topic
    before = sent("failed", "apns")
    apns_dispatcher()
    apns_api.send(conversation, alice)
    wait_until(lambda: sent("failed", "apns") > before and queue_empty(pg), what="the failure")
    assert apns.errors == [(400, "DeviceTokenNotForTopic")]
    assert devices_of(pg, bob) == 1


@pytest.mark.parametrize("status", [429, 503])
def test_429_and_503_are_retried_after_retry_after(apns_api, apns, apns_dispatcher, status):
    alice, bob = new_user(), new_user()
    conversation = apns_api.conversation(alice, bob)
    register_apns(apns_api, bob, apns.device("production", APNS_TOPIC))
    apns.trouble.fail(status, retry_after="1", seconds=0.5)
    before = sent("retried", "apns")
    apns_dispatcher()
    started = time.monotonic()
    apns_api.send(conversation, alice)
    wait_until(lambda: apns.delivered, what="the push after the refusal")
    assert time.monotonic() - started >= 1.0
    assert sent("retried", "apns") - before == apns.trouble.requests_refused >= 1


def test_a_hung_apns_is_timed_out_backed_off_and_caught_up(apns_api, apns, apns_dispatcher):
    alice, bob = new_user(), new_user()
    conversation = apns_api.conversation(alice, bob)
    register_apns(apns_api, bob, apns.device("production", APNS_TOPIC))
    apns.trouble.hang()
    dispatcher = apns_dispatcher(COUNTS_PUSH_TIMEOUT=0.5)
    apns_api.send(conversation, alice)
    host = apns.servers["production"].host
    wait_until(lambda: dispatcher.hosts.wait(host, time.time()) > 0, what="the host to be backed off")
    apns.trouble.heal()
    wait_until(lambda: apns.delivered, timeout=20, what="the push once APNs answers")
    assert apns.delivered[-1].payload["aps"]["badge"] == 1
