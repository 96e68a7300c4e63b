"""Push settings: half-configured providers and bad keys fail at start-up, with a clear message."""

import pytest

from counts.app import create_app
from counts.push import vapid
from counts.push.providers import apns, fcm
from counts.settings import Settings
from tests.support.environment import settings_for

BASE = {"COUNTS_ENV": "development"}


@pytest.mark.parametrize(("env", "message"), [
    ({"COUNTS_VAPID_PRIVATE_KEY": "x"}, "COUNTS_VAPID_SUBJECT"),
    ({"COUNTS_VAPID_PRIVATE_KEY": "x", "COUNTS_VAPID_SUBJECT": "ops@example.com"}, "mailto:"),
    ({"COUNTS_APNS_KEY_FILE": "/k.p8"}, "COUNTS_APNS_KEY_ID"),
    ({"COUNTS_PUSH_COALESCE": "0"}, "COUNTS_PUSH_COALESCE"),
    ({"COUNTS_PUSH_BATCH": "0"}, "COUNTS_PUSH_BATCH"),
    ({"COUNTS_PUSH_MAX_AGE": "soon"}, "COUNTS_PUSH_MAX_AGE"),
    ({"COUNTS_WEBPUSH_ALLOWED_HOSTS": "*.x.com:abc"}, "COUNTS_WEBPUSH_ALLOWED_HOSTS"),
    ({"COUNTS_WEBPUSH_ALLOWED_HOSTS": "push.example:99999"}, "COUNTS_WEBPUSH_ALLOWED_HOSTS"),
    ({"COUNTS_WEBPUSH_ALLOWED_HOSTS": "https://push.example"}, "COUNTS_WEBPUSH_ALLOWED_HOSTS"),
])
def test_bad_push_settings_fail_at_start_up(env, message):
    """When the app is made, before it answers anything (each provider's section is read then)."""
    with pytest.raises(RuntimeError, match=message):
        create_app(Settings.from_env({**BASE, **env}))


def test_an_unusable_vapid_key_fails_when_the_app_is_created(config):
    with pytest.raises(RuntimeError, match="COUNTS_VAPID_PRIVATE_KEY"):
        create_app(settings_for({**config, "COUNTS_VAPID_PRIVATE_KEY": "bm90LWEta2V5",
                                 "COUNTS_VAPID_SUBJECT": "mailto:a@b.example"}))


def test_vapid_keys_load_from_base64url_and_pem_alike():
    raw = vapid.generate()
    key = vapid.load_private_key(raw)
    pem = key.private_pem().decode()
    assert vapid.public_key(vapid.load_private_key(pem)) == vapid.public_key(key)
    assert len(vapid.b64url_decode(vapid.public_key(key))) == 65


def test_provider_files_that_are_not_keys_fail_at_dispatcher_start(tmp_path):
    bogus = tmp_path / "bogus"
    bogus.write_text("not a key")
    with pytest.raises(RuntimeError, match="COUNTS_APNS_KEY_FILE"):
        apns.load_key(str(bogus))
    settings = Settings.from_env({**BASE, "COUNTS_FCM_CREDENTIALS_FILE": str(bogus)})
    with pytest.raises(RuntimeError, match="COUNTS_FCM_CREDENTIALS_FILE"):
        fcm.from_settings(settings.section(fcm.FcmSettings), settings.push)
