"""Fixtures: a real Postgres database and a real Redis db of the tests' own, the app on them, and
the real processes tests start (gunicorn, redis-server, proxies, an identity provider, a Redis
Cluster, push fakes and workers); and the fault matrix's figures in the run's summary.

Fixtures only: what they are built from, and every helper a test calls, is in tests/support.
Fixtures more than one area uses are here; an area's own are in its folder's conftest.py.
"""

import os
from urllib.parse import urlsplit

import psycopg2
import pytest
import redis

from counts.app import create_app
from counts.postgres import migrations
from counts.postgres.pool import Database
from counts.push import vapid
from tests.support.api import Api, Tokens
from tests.support.clusters import RedisClusterProcesses
from tests.support.environment import ADMIN_URL, REDIS_URL, app_env, fault_env, gunicorn_env, settings_for
from tests.support.figures import FIGURES
from tests.support.identity import JwksServer, SigningKey
from tests.support.postgres import throwaway_database
from tests.support.proxy import TcpProxy
from tests.support.push import VAPID_SUBJECT, PushWorker
from tests.support.pushfakes.expo import ExpoService
from tests.support.pushfakes.server import FakeServer
from tests.support.pushfakes.tls import make_pki
from tests.support.pushfakes.webpush import PushService
from tests.support.services import Gunicorn, PrivateRedis

# Per run, so two runs on one machine (a developer's and CI's) never drop each other's database.
TEST_DATABASE = f"counts_test_{os.getpid()}"


# --- Postgres, Redis and the app on them --------------------------------------------------------

@pytest.fixture(scope="session")
def database_url():
    """A freshly created, migrated database of the tests' own (dropped and re-created per run)."""
    with throwaway_database(TEST_DATABASE) as url:
        db = Database(url, timeout=10, pool_size=1)
        migrations.upgrade(db)
        db.close()
        yield url


@pytest.fixture
def pg(database_url):
    """A plain autocommit connection for checking what Postgres holds, emptied before the test."""
    conn = psycopg2.connect(database_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("TRUNCATE conversations, conversation_members, messages, message_mentions, "
                    "user_settings, marker_outbox, push_devices, push_jobs, push_leases")
    yield conn
    conn.close()


@pytest.fixture
def redis_client():
    """The tests' own Redis db. Not flushed: every test makes up its own users, and markers
    expire (environment.MARKER_TTL), so runs sharing the db never disturb each other."""
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def config(database_url, pg, redis_client) -> dict[str, str]:
    """The environment of an app on the test database and Redis db (environment.app_env)."""
    return app_env(database_url)


@pytest.fixture
def app_factory(config):
    """Apps on the test database with some variables of their environment changed (`None`
    removes one); closed after the test."""
    apps = []

    def make(**overrides):
        apps.append(create_app(settings_for({**config, **overrides})))
        return apps[-1]

    yield make
    for made in apps:
        made.extensions["counts"].close()


@pytest.fixture
def app(app_factory):
    return app_factory()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def resources(app):
    return app.extensions["counts"]


@pytest.fixture
def tokens() -> Tokens:
    return Tokens()


@pytest.fixture
def api(client, tokens) -> Api:
    return Api(client, tokens)


# --- real processes ----------------------------------------------------------------------------

@pytest.fixture
def private_redis(tmp_path):
    """A redis-server of this test's own, which it may stop, flush or restart."""
    with PrivateRedis(tmp_path) as server:
        yield server


@pytest.fixture
def pg_proxy():
    """A cuttable TCP proxy in front of the test Postgres."""
    with TcpProxy(urlsplit(ADMIN_URL).port or 5432) as proxy:
        yield proxy


@pytest.fixture
def redis_proxy(private_redis):
    """A cuttable TCP proxy in front of this test's own Redis."""
    with TcpProxy(private_redis.port) as proxy:
        yield proxy


@pytest.fixture
def server_env(database_url) -> dict[str, str]:
    """Environment for a gunicorn running the service on the test database and Redis db."""
    return gunicorn_env(database_url)


@pytest.fixture
def live_server(server_env, pg, redis_client):
    """The service under gunicorn (2 workers), on the test database and Redis db."""
    with Gunicorn(server_env) as server:
        yield server


@pytest.fixture
def start_service(database_url, pg, tmp_path):
    """Start the service under gunicorn (2 workers) with the fault matrix's settings on a Redis
    URL (and optionally another database URL), its log in a file of the test's own; stopped after."""
    started: list[Gunicorn] = []

    def start(redis_url: str, db_url: str = database_url, **env: str) -> Gunicorn:
        """A started service on these URLs, with `env` overriding the fault-test settings."""
        log_path = tmp_path / f"gunicorn-{len(started)}.log"
        started.append(Gunicorn({**fault_env(db_url, redis_url), **env}, workers=2, threads=8,
                                log_path=log_path).start())
        return started[-1]

    yield start
    for service in started:
        service.stop()


@pytest.fixture
def provider():
    """A local identity provider's JWKS endpoint, publishing an EC (ES256) and an RSA (RS256) key."""
    server = JwksServer(SigningKey("EC"), SigningKey("RSA")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory):
    """A Redis Cluster of 3 primaries and 3 replicas, shared by the session's tests: a test that
    kills a primary kills one whose replica then serves its slots (see tests/support/clusters.py)."""
    cluster = RedisClusterProcesses(tmp_path_factory.mktemp("redis-cluster"))
    try:
        yield cluster.start()
    finally:
        cluster.stop()


# --- push: the fake Web Push service, the app configured for it, worker processes ---------------

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
def expo(pki):
    """Expo's push service on https://127.0.0.1:<port>, with push security on (an access token
    required)."""
    service = ExpoService(access_token="expo-access-token-for-tests")
    server = FakeServer(service, pki).start()
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
def workers(tmp_path):
    """Start push worker processes; every one still running is killed afterwards."""
    started = []

    def start(env: dict[str, str], use_gevent: bool = False) -> PushWorker:
        worker = PushWorker(env, tmp_path / f"worker-{len(started)}.log", use_gevent).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


# --- the fault matrix's figures, printed after the run ------------------------------------------
# A fault test appends its figures to figures.FIGURES; they ride on its report to the terminal
# summary, so they reach it from pytest-xdist's worker processes too (make test runs two).

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the figures a test's run produced to its report."""
    outcome = yield
    report = outcome.get_result()
    while FIGURES:
        figures = FIGURES.pop(0)
        report.user_properties.append(("fault figures", {
            "line": figures.line(), "faults": figures.faults, "requests": figures.requests,
            "acked_writes": figures.acked_writes, "stale": len(figures.stale),
            "lost": len(figures.lost)}))


def pytest_terminal_summary(terminalreporter):
    """The fault matrix's figures, one line per test and the totals."""
    found = [value for reports in terminalreporter.stats.values() for report in reports
             for name, value in getattr(report, "user_properties", ()) if name == "fault figures"]
    if not found:
        return
    terminalreporter.write_sep("-", "fault matrix figures")
    for figures in found:
        terminalreporter.write_line(figures["line"])
    totals = {key: sum(f[key] for f in found)
              for key in ("faults", "requests", "acked_writes", "stale", "lost")}
    terminalreporter.write_line(f"TOTAL: tests={len(found)} " + " ".join(
        f"{key}={value}" for key, value in totals.items()))
