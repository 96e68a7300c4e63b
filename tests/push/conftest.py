"""Fixtures for push beyond the root's (pki, push_service, push_config, workers): the app and its
API configured for the fakes, dispatcher threads, and Apple's and Google's fakes."""

import json
import threading

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from counts.push.worker import make_dispatcher
from tests.support.api import Api
from tests.support.environment import settings_for
from tests.support.pushfakes.apns import ApnsWorld
from tests.support.pushfakes.fcm import FcmService
from tests.support.pushfakes.server import FakeServer


@pytest.fixture
def push_app(app_factory, push_config):
    return app_factory(**push_config)


@pytest.fixture
def push_api(push_app, tokens):
    return Api(push_app.test_client(), tokens)


@pytest.fixture
def dispatchers(push_config):
    """Start dispatchers (threads in this process) on the app's config; all stopped afterwards."""
    running = []

    def start(**overrides):
        dispatcher = make_dispatcher(settings_for({**push_config, **overrides}))
        thread = threading.Thread(target=dispatcher.run, name="test-dispatcher", daemon=True)
        thread.start()
        running.append((dispatcher, thread))
        return dispatcher

    yield start
    for dispatcher, thread in running:
        dispatcher.stop()
        thread.join(30)
        dispatcher.close()
        dispatcher.db.close()


@pytest.fixture
def apns(pki, tmp_path):
    """Apple: the team's key (written where COUNTS_APNS_KEY_FILE points), production and sandbox."""
    key = ec.generate_private_key(ec.SECP256R1())
    key_file = tmp_path / "AuthKey.p8"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    world = ApnsWorld("TEAM123456", "KEY1234567", key.public_key())
    servers = {env: FakeServer(world.server(env), pki, alpn=("h2",)).start()
               for env in ("production", "sandbox")}
    world.key_file, world.servers = str(key_file), servers
    yield world
    for server in servers.values():
        server.stop()


@pytest.fixture
def apns_config(push_config, apns) -> dict:
    return {**push_config, "COUNTS_APNS_KEY_FILE": apns.key_file, "COUNTS_APNS_KEY_ID": apns.key_id,
            "COUNTS_APNS_TEAM_ID": apns.team_id, "COUNTS_APNS_HOST": apns.servers["production"].host,
            "COUNTS_APNS_SANDBOX_HOST": apns.servers["sandbox"].host}


@pytest.fixture
def fcm(pki, tmp_path):
    """Google: a service account (its JSON where COUNTS_FCM_CREDENTIALS_FILE points), the token
    endpoint its token_uri names, and FCM."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    service = FcmService("counts-test", "push@counts-test.iam.gserviceaccount.com", key.public_key())
    server = FakeServer(service, pki).start()
    service.token_uri = f"{server.url}/token"
    credentials = tmp_path / "service-account.json"
    credentials.write_text(json.dumps({
        "type": "service_account", "project_id": service.project_id, "private_key_id": "k1",
        "private_key": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()).decode(),
        "client_email": service.client_email, "client_id": "1", "token_uri": service.token_uri}))
    service.credentials_file, service.server = str(credentials), server
    yield service
    server.stop()


@pytest.fixture
def fcm_config(push_config, fcm) -> dict:
    return {**push_config, "COUNTS_FCM_CREDENTIALS_FILE": fcm.credentials_file,
            "COUNTS_FCM_URL": fcm.server.url}


@pytest.fixture
def expo_config(push_config, expo) -> dict:
    return {**push_config, "COUNTS_EXPO_PUSH": "on", "COUNTS_EXPO_URL": expo.server.url,
            "COUNTS_EXPO_ACCESS_TOKEN": expo.access_token, "COUNTS_EXPO_CHANNEL_ID": "messages"}
