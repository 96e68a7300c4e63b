"""Push in attached mode, end to end: plain SQL writes by a low-privilege role under row-level
security reach a registered Web Push subscriber through the example's triggers (counts.push)
and a real `flask --app app push-worker` process attached to the app's database, which builds
each push from the app's unread function. The test is the browser, as in tests/push/test_webpush.py.
"""

import json
import subprocess

import pytest

from counts.app import create_app
from tests.support.api import Api, Tokens, new_user
from tests.support.environment import settings_for
from tests.support.push import VAPID_SUBJECT, subscribe, vapid_claims, worker_env
from tests.support.services import Gunicorn, wait_until
from tests.support.supabase_chat import UNREAD_FUNCTION, attached_env, attached_settings


@pytest.fixture
def push_settings(chat, pki, push_service):
    """Attached mode on the example's database, with Web Push on, trusting the fake's CA."""
    from counts.push import vapid

    return {**attached_settings(chat), "COUNTS_VAPID_PRIVATE_KEY": vapid.generate(),
            "COUNTS_VAPID_SUBJECT": VAPID_SUBJECT,
            "COUNTS_WEBPUSH_ALLOWED_HOSTS": push_service.server.host,
            "COUNTS_PUSH_CA_FILE": pki.ca_file, "COUNTS_PUSH_COALESCE": 0.3,
            "COUNTS_PUSH_POLL_INTERVAL": 1.0, "COUNTS_PUSH_RETRY_BASE": 0.2,
            "COUNTS_PUSH_TIMEOUT": 2.0}


@pytest.fixture
def api(push_settings):
    """The service in attached mode, in-process: where apps register their devices."""
    app = create_app(settings_for(push_settings))
    yield Api(app.test_client(), Tokens())
    app.extensions["counts"].close()


@pytest.fixture
def dispatcher(push_settings, workers):
    """A push worker process attached to the example's database."""
    return workers({**worker_env(push_settings), "COUNTS_SOURCE": "attached",
                    "COUNTS_UNREAD_FUNCTION": UNREAD_FUNCTION})


def test_a_message_written_by_sql_reaches_the_subscriber_and_a_read_by_sql_clears_the_badge(
        api, push_service, dispatcher, writer):
    alice, bob = new_user(), new_user()
    conversation = writer.create_conversation(alice, [bob])
    bobs_browser = subscribe(api, push_service, bob)

    writer.send(conversation, alice, "Lunch?")  # as PostgREST: role authenticated, Alice's claims
    wait_until(lambda: len(bobs_browser.messages()) == 1, what="the alert push")
    assert bobs_browser.messages()[0] == {
        "type": "unread", "user_id": str(bob), "total": 1, "unread_conversations": 1,
        "badge": 1, "mentions": 0, "conversation_id": conversation, "alert": True}
    alert = bobs_browser.received()[0]
    assert b"Lunch?" not in alert.body
    assert alert.headers["urgency"] == "normal"
    public_key = api.client.get("/v1/push/webpush-key").get_json()["public_key"]
    assert vapid_claims(alert, public_key, push_service.origin)["sub"] == VAPID_SUBJECT

    # Bob reads on his phone (the app updates his read receipt): the browser's badge must clear.
    writer.read(conversation, bob)
    wait_until(lambda: len(bobs_browser.messages()) == 2, what="the badge-only push")
    assert bobs_browser.messages()[1] == {
        "type": "unread", "user_id": str(bob), "total": 0, "unread_conversations": 0,
        "badge": 0, "mentions": 0, "conversation_id": conversation, "alert": False}
    assert bobs_browser.received()[1].headers["urgency"] == "low"
    assert push_service.rejected == []
    assert "Traceback" not in dispatcher.log()


def test_an_expo_token_registered_with_curl_gets_the_alert_and_the_cleared_badge(
        chat, pki, expo, workers, writer, tmp_path):
    """Expo in attached mode: an app registers its Expo push token with curl against the
    service under gunicorn; messages and reads written by plain SQL reach Expo's fake."""
    expo_env = {"COUNTS_EXPO_PUSH": "on", "COUNTS_EXPO_URL": expo.server.url,
                "COUNTS_EXPO_ACCESS_TOKEN": expo.access_token, "COUNTS_PUSH_CA_FILE": pki.ca_file,
                "COUNTS_PUSH_COALESCE": "0.3", "COUNTS_PUSH_POLL_INTERVAL": "1",
                "COUNTS_PUSH_TIMEOUT": "2"}
    env = {**attached_env(chat), **expo_env}
    alice, bob = new_user(), new_user()
    conversation = writer.create_conversation(alice, [bob])
    token = expo.device()
    with Gunicorn(env, log_path=tmp_path / "gunicorn.log") as server:
        registered = subprocess.run(
            ["curl", "-s", "-w", "\\n%{http_code}", "-X", "POST",
             f"{server.url}/v1/users/{bob}/devices",
             "-H", f"Authorization: {Tokens().user(bob)['Authorization']}",
             "-H", "Content-Type: application/json",
             "-d", json.dumps({"platform": "expo", "token": token})],
            capture_output=True, text=True, timeout=30, check=True)
        body, status = registered.stdout.rsplit("\n", 1)
        assert status == "201", registered.stdout
        assert token not in body and "device_id" in json.loads(body)
    dispatcher = workers(env)

    writer.send(conversation, alice, "Lunch?")  # as PostgREST: role authenticated, Alice's claims
    wait_until(lambda: len(expo.messages_to(token)) == 1, what="the alert at Expo")
    alert = expo.messages_to(token)[0]
    assert alert["data"] == {"type": "unread", "user_id": str(bob), "total": 1, "badge": 1, "mentions": 0,
                             "unread_conversations": 1, "conversation_id": conversation,
                             "alert": True}
    assert alert["badge"] == 1 and "title" in alert and "Lunch" not in json.dumps(alert)

    writer.read(conversation, bob)  # read elsewhere: the app icon's badge must clear
    wait_until(lambda: len(expo.messages_to(token)) == 2, what="the badge-only push")
    assert expo.messages_to(token)[1]["badge"] == 0
    assert "title" not in expo.messages_to(token)[1]
    assert expo.errors == []
    assert "Traceback" not in dispatcher.log()
