"""The push benchmark: pushes per second per dispatcher process, and latency from a write's 201 to
the push service's receipt at the seed's message rate (time-compressed).

The push service is the Web Push fake of the tests (tests/support/pushfakes), on this machine, over TLS
with a private CA: every push is encrypted (aes128gcm) and VAPID-signed for real, and the fake
checks both. Each user has one subscription and an inbox conversation with a sender of their own
(who has no device), so a user's total only grows and a push's total says which messages it
carries: message j of a user (by 201 time) counts as delivered by the first push whose total is at
least j, received after its 201 or before it: a push can beat the writer's 201 (NOTIFY fires at
the commit, before the response is written), which counts as 0 s. The dispatcher is
`flask --app app push-worker`, as deployed.
"""

import json
import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import psutil
import requests

from bench import pg
from bench.services import (
    BIN,
    JWT_SECRET,
    OUT,
    ROOT,
    gunicorn,
    migrate,
    service_env,
    stop_process,
)
from counts.identity import mint_token
from counts.push import vapid
from tests.support.pushfakes.server import FakeServer
from tests.support.pushfakes.tls import make_pki
from tests.support.pushfakes.webpush import PushService, Subscriber
from tests.support.services import wait_until

PUSH_DB = "bench_push"
P99_TARGET_S = 1.0


@dataclass
class PushResult:
    """What the push benchmark measured."""

    users: int
    throughput_pushes: int = 0
    throughput_seconds: float = 0.0
    dispatcher_cpu_seconds: float = 0.0
    offered_per_second: float = 0.0
    duration: float = 0.0
    messages: int = 0
    write_errors: int = 0
    pushes: int = 0
    latency_s: list[float] = field(default_factory=list)
    undelivered: int = 0

    @property
    def pushes_per_second(self) -> float:
        """Pushes one dispatcher process sent per second (encryption and TLS included)."""
        return self.throughput_pushes / self.throughput_seconds if self.throughput_seconds else 0.0


@dataclass
class World:
    """Users, their inbox conversations and senders, and their browsers."""

    users: list[str]
    senders: list[str]
    conversations: list[str]
    browsers: dict[str, Subscriber]  # subscription id -> browser
    browser_of: dict[str, Subscriber]  # user -> browser


def build_world(url: str, service: PushService, origin: str, key: str, users: int) -> World:
    """Seed the users, inboxes and subscriptions straight into Postgres (COPY)."""
    user_ids = [str(uuid.uuid4()) for _ in range(users)]
    senders = [str(uuid.uuid4()) for _ in range(users)]
    conversations = [str(uuid.uuid4()) for _ in range(users)]
    browsers = [Subscriber(service, origin, key) for _ in range(users)]
    conn = pg.connect(url, autocommit=False)
    with conn.cursor() as cur:
        pg.copy_rows(cur, "conversations", ["id"], ([c] for c in conversations))
        pg.copy_rows(cur, "conversation_members", ["conversation_id", "user_id"],
                     ((c, member) for c, user, sender in zip(conversations, user_ids, senders, strict=True)
                      for member in (user, sender)))
        pg.copy_rows(cur, "push_devices", ["id", "user_id", "platform", "token", "settings"],
                     ((uuid.uuid4(), user, "webpush", browser.endpoint,
                       json.dumps(browser.subscription()["keys"]))
                      for user, browser in zip(user_ids, browsers, strict=True)))
    conn.commit()
    conn.close()
    return World(user_ids, senders, conversations, {b.id: b for b in browsers},
                 dict(zip(user_ids, browsers, strict=True)))


def worker_env(url: str, redis_url: str, key: str, host: str, ca_file: str) -> dict[str, str]:
    """The dispatcher's environment: Web Push to the fake only, trusting its CA."""
    return service_env(url, redis_url, vapid_private_key=key, vapid_subject="mailto:bench@counts.invalid",
                       webpush_allowed_hosts=host, push_ca_file=ca_file)


def start_worker(env: dict[str, str]):
    """`flask --app app push-worker`, logging under bench/out/."""
    import subprocess

    log = open(OUT / "push-worker.log", "w")  # noqa: SIM115 - lives with the process
    return subprocess.Popen([str(BIN / "flask"), "--app", "app", "push-worker"], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)


def cpu_seconds(pid: int) -> float:
    """CPU seconds a process has used."""
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def measure_throughput(url: str, service: PushService, world: World, env: dict, jobs: int,
                       result: PushResult) -> None:
    """Queue `jobs` due pushes at once, start one dispatcher, time them through."""
    conn = pg.connect(url)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO push_jobs (user_id, alert, conversation_id) "
                    "SELECT unnest(%s::uuid[]), true, NULL", (world.users[:jobs],))
    before = len(service.received)
    worker = start_worker(env)
    try:
        wait_until(lambda: len(service.received) > before, timeout=60, what="the first push")
        cpu = cpu_seconds(worker.pid)
        first = service.received[before].at
        wait_until(lambda: len(service.received) >= before + jobs, timeout=600, what="every push")
        result.dispatcher_cpu_seconds = cpu_seconds(worker.pid) - cpu
        result.throughput_pushes = jobs - 1
        result.throughput_seconds = service.received[before + jobs - 1].at - first
    finally:
        stop_process(worker)
    with conn.cursor() as cur:
        cur.execute("UPDATE push_devices SET hold_until = '-infinity'")
    conn.close()


def send_messages(base_url: str, world: World, rate: float, duration: float,
                  result: PushResult) -> list[tuple[str, float]]:
    """Open-loop Poisson writes at `rate`/s for `duration` s: [(recipient, time of the 201)]."""
    token = mint_token(JWT_SECRET, "bench-writer", service=True)
    schedule, now = [], 0.0
    while True:
        now += random.expovariate(rate)
        if now >= duration:
            break
        schedule.append((now, random.randrange(len(world.users))))
    done: list[tuple[str, float]] = []
    lock = threading.Lock()
    local = threading.local()
    start = time.monotonic() + 0.5

    def send(entry) -> None:
        at, index = entry
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        time.sleep(max(0.0, start + at - time.monotonic()))
        response = session.post(f"{base_url}/v1/conversations/{world.conversations[index]}/messages",
                                headers={"Authorization": f"Bearer {token}"}, timeout=30,
                                json={"sender_id": world.senders[index], "body": "bench"})
        with lock:
            if response.status_code == 201:
                done.append((world.users[index], time.time()))
            else:
                result.write_errors += 1

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(send, schedule))
    result.messages = len(done)
    return done


def latencies(sent: list[tuple[str, float]], service: PushService, world: World,
              since: int) -> tuple[list[float], int]:
    """Per message, seconds from its 201 to the first push that carries it; and how many none did."""
    pushes: dict[str, list[tuple[float, int]]] = {}
    for message in service.received[since:]:
        browser = world.browsers[message.subscription]
        total = json.loads(browser.decrypt(message.body))["total"]
        pushes.setdefault(message.subscription, []).append((message.at, total))
    by_user: dict[str, list[float]] = {}
    for user, at in sorted(sent, key=lambda item: item[1]):
        by_user.setdefault(user, []).append(at)
    found, missing = [], 0
    for user, times in by_user.items():
        received = sorted(pushes.get(world.browser_of[user].id, []))
        for rank, at in enumerate(times, start=1):
            # The total says the push was built after the message committed; it may reach the
            # push service before the writer sees its 201 (NOTIFY fires at commit): that is 0 s.
            arrival = next((when for when, total in received if total >= rank), None)
            if arrival is None:
                missing += 1
            else:
                found.append(max(0.0, arrival - at))
    return found, missing


def run_push(admin_url: str, redis_url: str, users: int, duration: float, messages_per_user_day: float,
             time_compression: float, jobs: int, workers: int = 2, threads: int = 8) -> PushResult:
    """Both measurements on a database of their own; every process started here is stopped."""
    result = PushResult(users)
    pg.recreate_database(admin_url, PUSH_DB)
    url = pg.database_url(admin_url, PUSH_DB)
    migrate(url, redis_url)
    pki_dir = OUT / "push-pki"
    pki_dir.mkdir(parents=True, exist_ok=True)
    pki = make_pki(pki_dir)
    service = PushService()
    server = FakeServer(service, pki).start()
    service.origin = server.url
    key = vapid.generate()
    try:
        world = build_world(url, service, server.url, vapid.public_key(vapid.load_private_key(key)), users)
        env = worker_env(url, redis_url, key, server.host, pki.ca_file)
        measure_throughput(url, service, world, env, min(jobs, users), result)
        result.offered_per_second = users * messages_per_user_day * time_compression / 86400
        result.duration = duration
        since = len(service.received)
        worker = start_worker(env)
        try:
            with gunicorn(service_env(url, redis_url), workers=workers, threads=threads) as api:
                sent = send_messages(api.url, world, result.offered_per_second, duration, result)
            # A round's pushes are received before it commits: an empty queue means all arrived.
            wait_until(lambda: _queue_empty(url), timeout=120, what="the push queue to drain")
        finally:
            stop_process(worker)
        result.pushes = len(service.received) - since
        result.latency_s, result.undelivered = latencies(sent, service, world, since)
    finally:
        server.stop()
    return result


def _queue_empty(url: str) -> bool:
    """No push job left."""
    conn = pg.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM push_jobs")
            return cur.fetchone()[0] == 0
    finally:
        conn.close()
