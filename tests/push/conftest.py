"""Fixtures for push: a test CA, the fake providers on it, the app configured for them, dispatchers."""

import json
import threading

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from counts.push import vapid
from counts.push.worker import make_dispatcher
from tests.conftest import settings_for
from tests.support.pushfakes.apns import ApnsWorld
from tests.support.pushfakes.fcm import FcmService
from tests.support.pushfakes.server import FakeServer
from tests.support.pushfakes.tls import make_pki
from tests.support.pushfakes.webpush import PushService, Subscriber

VAPID_SUBJECT = "mailto:ops@counts.test"


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """A CA the service trusts through COUNTS_PUSH_CA_FILE, and the fakes' certificate."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def push_service(pki):
    """A Web Push service on https://127.0.0.1:<port>."""
    service = PushService()
    server = FakeServer(service, pki).start()
    service.origin = server.url
    service.server = server
    yield service
    server.stop()


@pytest.fixture
def push_config(config, pki, push_service) -> dict:
    """App settings with Web Push on, trusting the test CA, with short windows and backoffs."""
    return {**config, "COUNTS_VAPID_PRIVATE_KEY": vapid.generate(), "COUNTS_VAPID_SUBJECT": VAPID_SUBJECT,
            "COUNTS_WEBPUSH_ALLOWED_HOSTS": (push_service.server.host,), "COUNTS_PUSH_CA_FILE": pki.ca_file,
            "COUNTS_PUSH_COALESCE": 0.3, "COUNTS_PUSH_POLL_INTERVAL": 1.0, "COUNTS_PUSH_RETRY_BASE": 0.2,
            "COUNTS_PUSH_TIMEOUT": 2.0}


@pytest.fixture
def push_app(app_factory, push_config):
    return app_factory(**push_config)


@pytest.fixture
def push_api(push_app, tokens):
    from tests.conftest import Api

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


def subscribe(push_api, push_service, user) -> Subscriber:
    """A browser of `user` subscribes with the service's key and registers the subscription."""
    key = push_api.client.get("/v1/push/webpush-key").get_json()["public_key"]
    subscriber = Subscriber(push_service, push_service.origin, key)
    response = push_api.client.post(f"/v1/users/{user}/devices", headers=push_api.tokens.user(user),
                                    json={"platform": "webpush", "subscription": subscriber.subscription()})
    assert response.status_code == 201, response.get_json()
    subscriber.device_id = response.get_json()["device_id"]
    return subscriber


APNS_TOPIC = "com.example.chat"


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


def register_apns(api, user, token: str, environment: str = "production") -> str:
    """Register an iPhone of `user`; its device id."""
    response = api.client.post(f"/v1/users/{user}/devices", headers=api.tokens.user(user), json={
        "platform": "apns", "token": token, "topic": APNS_TOPIC, "environment": environment})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["device_id"]



@pytest.fixture
def fcm(pki, tmp_path):
    """Google: a service account (its JSON where COUNTS_FCM_CREDENTIALS_FILE points), the token
    endpoint its token_uri names, and FCM."""
    from cryptography.hazmat.primitives.asymmetric import rsa

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


def register_fcm(api, user, token: str) -> str:
    """Register an Android phone of `user`; its device id."""
    response = api.client.post(f"/v1/users/{user}/devices", headers=api.tokens.user(user),
                               json={"platform": "fcm", "token": token})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["device_id"]


def worker_env(config: dict) -> dict[str, str]:
    """The environment of a `flask --app app push-worker` process with the app's push settings."""
    from tests.conftest import env_value

    return {key: env_value(value) for key, value in config.items() if value is not None}


class WorkerProcess:
    """`flask --app app push-worker` as its own process (optionally monkey-patched by gevent)."""

    def __init__(self, env: dict[str, str], log_path, use_gevent: bool = False):
        import os

        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.use_gevent = use_gevent
        self.process = None

    def start(self) -> "WorkerProcess":
        import subprocess
        import sys

        from tests.support.services import ROOT, wait_until

        if self.use_gevent:
            command = [sys.executable, "-c", "from gevent import monkey; monkey.patch_all()\n"
                       "import sys; from flask.cli import main\n"
                       "sys.argv = ['flask', '--app', 'app', 'push-worker']; main()"]
        else:
            command = [sys.executable, "-m", "flask", "--app", "app", "push-worker"]
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in wait()
        self.process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=self._log,
                                        stderr=self._log)
        wait_until(lambda: "push dispatcher started" in self.log(), what="the push worker to start")
        return self

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def signal(self, signum) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = 30) -> int:
        """Wait for the process to end; its exit status."""
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self._log.close()

    def stop(self) -> None:
        """SIGKILL it if it is still running (a test's cleanup)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.wait()


@pytest.fixture
def workers(tmp_path):
    """Start push worker processes; every one still running is killed afterwards."""
    started = []

    def start(env: dict[str, str], use_gevent: bool = False) -> WorkerProcess:
        worker = WorkerProcess(env, tmp_path / f"worker-{len(started)}.log", use_gevent).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
