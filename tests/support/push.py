"""Push as tests drive it: devices registered as apps register them, what the dispatcher did
(the queue, the devices, its metrics, a push's VAPID token), and `flask push-worker` as a process."""

import os
import subprocess
import sys
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client import REGISTRY

from tests.support import ROOT
from tests.support.environment import env_value
from tests.support.pushfakes.webpush import Subscriber, b64url_decode
from tests.support.services import wait_until

VAPID_SUBJECT = "mailto:ops@counts.test"
APNS_TOPIC = "com.example.chat"


def subscribe(push_api, push_service, user) -> Subscriber:
    """A browser of `user` subscribes with the service's key and registers the subscription."""
    key = push_api.client.get("/v1/push/webpush-key").get_json()["public_key"]
    subscriber = Subscriber(push_service, push_service.origin, key)
    response = push_api.client.post(f"/v1/users/{user}/devices", headers=push_api.tokens.user(user),
                                    json={"platform": "webpush", "subscription": subscriber.subscription()})
    assert response.status_code == 201, response.get_json()
    subscriber.device_id = response.get_json()["device_id"]
    return subscriber


def register_apns(api, user, token: str, environment: str = "production") -> str:
    """Register an iPhone of `user`; its device id."""
    response = api.client.post(f"/v1/users/{user}/devices", headers=api.tokens.user(user), json={
        "platform": "apns", "token": token, "topic": APNS_TOPIC, "environment": environment})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["device_id"]


def register_fcm(api, user, token: str) -> str:
    """Register an Android phone of `user`; its device id."""
    response = api.client.post(f"/v1/users/{user}/devices", headers=api.tokens.user(user),
                               json={"platform": "fcm", "token": token})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["device_id"]


def register_expo(api, user, token: str) -> str:
    """Register an Expo app install of `user`; its device id."""
    response = api.client.post(f"/v1/users/{user}/devices", headers=api.tokens.user(user),
                               json={"platform": "expo", "token": token})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["device_id"]


def sent(outcome: str, provider: str = "webpush") -> float:
    """counts_push_sent_total for this process."""
    return REGISTRY.get_sample_value("counts_push_sent_total",
                                     {"provider": provider, "outcome": outcome}) or 0.0


def queue_empty(pg) -> bool:
    """Whether no push job waits."""
    with pg.cursor() as cur:
        cur.execute("SELECT count(*) FROM push_jobs")
        return cur.fetchone()[0] == 0


def devices_of(pg, user) -> int:
    """How many devices `user` has registered."""
    with pg.cursor() as cur:
        cur.execute("SELECT count(*) FROM push_devices WHERE user_id = %s", (str(user),))
        return cur.fetchone()[0]


def vapid_claims(message, public_key: str, audience: str) -> dict:
    """The VAPID token of a received push, verified with the service's published key."""
    scheme, _, params = message.headers["authorization"].partition(" ")
    assert scheme == "vapid"
    fields = dict(part.strip().split("=", 1) for part in params.split(","))
    assert fields["k"] == public_key
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(public_key))
    return jwt.decode(fields["t"], key, algorithms=["ES256"], audience=audience)


def worker_env(config: dict) -> dict[str, str]:
    """The environment of a `flask --app app push-worker` process with the app's push settings."""
    return {key: env_value(value) for key, value in config.items() if value is not None}


class PushWorker:
    """`flask --app app push-worker` as its own process (optionally monkey-patched by gevent)."""

    def __init__(self, env: dict[str, str], log_path: Path, use_gevent: bool = False):
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.use_gevent = use_gevent
        self.process: subprocess.Popen | None = None

    def start(self) -> "PushWorker":
        """Start it; return once it says its dispatcher started."""
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
        """SIGKILL it if it is still running, and close its log either way (a test's cleanup:
        a test may have killed it already, and the log must not be left to the collector)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
        self.wait()
