"""FCM HTTP v1 against the local fake (tests/support/pushfakes/fcm.py): OAuth2 from a service-account
file through the token endpoint its token_uri names, FCM's message rules and error bodies."""

import pytest

from tests.support.api import Api, new_user
from tests.support.push import devices_of, queue_empty, register_fcm, sent
from tests.support.services import wait_until


@pytest.fixture
def fcm_api(app_factory, fcm_config, tokens):
    return Api(app_factory(**fcm_config).test_client(), tokens)


@pytest.fixture
def fcm_dispatcher(dispatchers, fcm_config):
    return lambda **overrides: dispatchers(**{**fcm_config, **overrides})


def test_an_alert_then_a_badge_as_data_messages_with_one_access_token(fcm_api, fcm, fcm_dispatcher):
    alice, bob = new_user(), new_user()
    conversation = fcm_api.conversation(alice, bob)
    token = fcm.device()
    register_fcm(fcm_api, bob, token)
    fcm_dispatcher()
    fcm_api.send(conversation, alice, "Lunch?")
    wait_until(lambda: fcm.sent, what="the alert")
    message = fcm.sent[0].message
    assert fcm.sent[0].token == token
    assert message["data"] == {"type": "unread", "user_id": str(bob), "total": "1",
                               "unread_conversations": "1", "badge": "1", "mentions": "0",
                               "conversation_id": conversation, "alert": "true"}
    assert message["android"]["collapse_key"] == "unread"
    assert message["android"]["priority"] == "HIGH"
    assert 23 * 3600 < int(message["android"]["ttl"][:-1]) <= 24 * 3600
    fcm_api.read(conversation, bob)
    wait_until(lambda: len(fcm.sent) == 2, what="the badge-only push")
    assert fcm.sent[1].message["data"]["total"] == "0"
    assert fcm.sent[1].message["data"]["alert"] == "false"
    assert fcm.sent[1].message["android"]["priority"] == "NORMAL"
    assert fcm.tokens_issued == 1 and fcm.errors == []


def test_a_rejected_access_token_is_replaced_once(fcm_api, fcm, fcm_dispatcher):
    alice, bob = new_user(), new_user()
    conversation = fcm_api.conversation(alice, bob)
    register_fcm(fcm_api, bob, fcm.device())
    fcm_dispatcher()
    fcm_api.send(conversation, alice)
    wait_until(lambda: len(fcm.sent) == 1, what="the first push")
    fcm.expire_access_tokens()
    fcm_api.send(conversation, alice)
    wait_until(lambda: len(fcm.sent) == 2, what="the push with a new access token")
    assert fcm.tokens_issued == 2
    assert [status for status, _ in fcm.errors] == [401]


@pytest.mark.parametrize("how", ["unregistered", "other_sender"])
def test_unregistered_and_sender_id_mismatch_are_gone(fcm_api, fcm, fcm_dispatcher, pg, how):
    alice, bob = new_user(), new_user()
    conversation = fcm_api.conversation(alice, bob)
    token = fcm.device()
    register_fcm(fcm_api, bob, token)
    getattr(fcm, how).add(token)
    before = sent("gone", "fcm")
    fcm_dispatcher()
    fcm_api.send(conversation, alice)
    wait_until(lambda: devices_of(pg, bob) == 0, what="the device to be forgotten")
    assert sent("gone", "fcm") - before == 1


def test_invalid_argument_keeps_the_device(fcm_api, fcm, fcm_dispatcher, pg):
    alice, bob = new_user(), new_user()
    conversation = fcm_api.conversation(alice, bob)
    register_fcm(fcm_api, bob, "not-a-token-fcm-knows")
    before = sent("failed", "fcm")
    fcm_dispatcher()
    fcm_api.send(conversation, alice)
    wait_until(lambda: sent("failed", "fcm") > before and queue_empty(pg), what="the failure")
    assert devices_of(pg, bob) == 1
    assert fcm.errors[0][0] == 400


@pytest.mark.parametrize("status", [429, 503])
def test_quota_exceeded_and_unavailable_are_retried(fcm_api, fcm, fcm_dispatcher, status):
    alice, bob = new_user(), new_user()
    conversation = fcm_api.conversation(alice, bob)
    register_fcm(fcm_api, bob, fcm.device())
    fcm.trouble.fail(status, retry_after="1", seconds=0.5)
    before = sent("retried", "fcm")
    fcm_dispatcher()
    fcm_api.send(conversation, alice)
    wait_until(lambda: fcm.sent, what="the push after the refusal")
    assert sent("retried", "fcm") - before == fcm.trouble.requests_refused >= 1


def test_the_data_rules_of_the_fake_hold():
    from tests.support.pushfakes.fcm import FcmService

    assert FcmService.check_message({"data": {"total": 1}})[0] == "message.data[0].value"
    assert FcmService.check_message({"data": {"google.x": "1"}})[0] == "message.data[0].key"
    assert FcmService.check_message({"data": {"a": "b"}, "android": {"ttl": "10"}}) is not None
    assert FcmService.check_message({"data": {"a": "b"}, "android": {"ttl": "86400s",
                                                                     "priority": "HIGH"}}) is None
