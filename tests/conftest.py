"""Fixtures: a real Postgres database and a real Redis db of the tests' own, and the app on them."""

import os
import uuid
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import jsonschema_rs
import psycopg2
import pytest
import redis

from counts.app import create_app
from counts.identity import mint_token
from counts.postgres import migrations
from counts.postgres.pool import Database
from counts.settings import Settings
from tests.faults.verdict import FIGURES
from tests.support.clusters import RedisClusterProcesses
from tests.support.identity import JwksServer, SigningKey
from tests.support.services import Gunicorn, PrivateRedis, TcpProxy

# make test points these at the local services (or embedded ones); the defaults are the local ones.
ADMIN_URL = os.environ.get("COUNTS_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("COUNTS_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
# Per run, so two runs on one machine (a developer's and CI's) never drop each other's database.
TEST_DATABASE = f"counts_test_{os.getpid()}"
MARKER_TTL = 900
SECRET = "test-secret-0123456789-0123456789"


def with_database(url: str, name: str) -> str:
    """The same server URL, naming another database."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


@pytest.fixture(scope="session")
def database_url():
    """A freshly created, migrated database of the tests' own (dropped and re-created per run)."""
    def admin(statement: str) -> None:
        conn = psycopg2.connect(ADMIN_URL)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(statement)
        conn.close()

    admin(f"DROP DATABASE IF EXISTS {TEST_DATABASE} WITH (FORCE)")
    admin(f"CREATE DATABASE {TEST_DATABASE}")
    url = with_database(ADMIN_URL, TEST_DATABASE)
    db = Database(url, timeout=10, pool_size=1)
    migrations.upgrade(db)
    db.close()
    yield url
    admin(f"DROP DATABASE IF EXISTS {TEST_DATABASE} WITH (FORCE)")


@pytest.fixture
def pg(database_url):
    """A plain autocommit connection for checking what Postgres holds, emptied before the test."""
    conn = psycopg2.connect(database_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("TRUNCATE conversations, conversation_members, messages, marker_outbox, "
                    "push_devices, push_jobs, push_leases")
    yield conn
    conn.close()


@pytest.fixture
def redis_client():
    """The tests' own Redis db. Not flushed: every test makes up its own users, and markers
    expire (MARKER_TTL below), so runs sharing the db never disturb each other."""
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


def env_value(value) -> str:
    """A test's setting as its environment variable holds it: lists comma-separated."""
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


def settings_for(env: dict) -> Settings:
    """The settings of an environment given as a dict of any values (`None` leaves one out)."""
    return Settings.from_env({key: env_value(value) for key, value in env.items()
                              if value is not None})


@pytest.fixture
def config(database_url, pg, redis_client) -> dict[str, str]:
    """The environment of an app on the test database and Redis db. No clock-skew leeway: a token
    expires at its `exp` exactly (tests/test_auth_supabase.py covers the leeway)."""
    return {"DATABASE_URL": database_url, "REDIS_URL": REDIS_URL, "COUNTS_JWT_SECRET": SECRET,
            "COUNTS_JWT_LEEWAY": "0", "COUNTS_POLL_INTERVAL": "7",
            "COUNTS_OUTBOX_DRAIN_INTERVAL": "0", "COUNTS_PG_TIMEOUT": "2",
            "COUNTS_MARKER_TTL": str(MARKER_TTL), "COUNTS_RATE_LIMIT": "0",
            "COUNTS_ANONYMOUS_RATE_LIMIT": "0"}


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


def admin_client(app):
    """A test client of the app's operators' address (counts.admin: /metrics, /readyz in full)."""
    return app.extensions["counts.admin"].test_client()


@pytest.fixture
def resources(app):
    return app.extensions["counts"]


class Tokens:
    """Authorization headers for users and services."""

    def user(self, user_id) -> dict[str, str]:
        return {"Authorization": f"Bearer {mint_token(SECRET, str(user_id))}"}

    def service(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {mint_token(SECRET, 'test-service', service=True)}"}


@pytest.fixture
def tokens() -> Tokens:
    return Tokens()


class Api:
    """The service's endpoints as a test (or a simulated client) calls them."""

    def __init__(self, client, tokens: Tokens):
        self.client, self.tokens = client, tokens

    def conversation(self, *members) -> str:
        response = self.client.post("/v1/conversations", headers=self.tokens.service(),
                                    json={"member_ids": [str(m) for m in members]})
        assert response.status_code == 201, response.get_json()
        return response.get_json()["conversation_id"]

    def send(self, conversation_id, sender, body="hello"):
        return self.client.post(f"/v1/conversations/{conversation_id}/messages",
                                headers=self.tokens.user(sender),
                                json={"sender_id": str(sender), "body": body})

    def read(self, conversation_id, user, up_to_seq=None):
        body = {"user_id": str(user)}
        if up_to_seq is not None:
            body["up_to_seq"] = up_to_seq
        return self.client.post(f"/v1/conversations/{conversation_id}/read",
                                headers=self.tokens.user(user), json=body)

    def counts(self, user, etag=None, method="get"):
        headers = self.tokens.user(user)
        if etag is not None:
            headers["If-None-Match"] = etag
        return getattr(self.client, method)(f"/v1/users/{user}/unread-counts", headers=headers)


@pytest.fixture
def api(client, tokens) -> Api:
    return Api(client, tokens)


def new_user() -> uuid.UUID:
    return uuid.uuid4()


TRUTH = """
SELECT coalesce(sum(n), 0)::int FROM (
    SELECT count(msg.seq) AS n
    FROM conversation_members m
    JOIN messages msg ON msg.conversation_id = m.conversation_id
                     AND msg.seq > m.last_read_seq AND msg.deleted_at IS NULL
    WHERE m.user_id = %s
    GROUP BY m.conversation_id
) per_conversation
"""


def documented(app, schema: str, body: dict) -> bool:
    """Whether `body` conforms to the named schema of the app's OpenAPI document."""
    document = app.test_client().get("/openapi.json").get_json()
    return jsonschema_rs.validator_for({"$ref": f"#/components/schemas/{schema}",
                                        "components": document["components"]}).is_valid(body)


def true_total(pg_conn, user_id) -> int:
    """A user's unread total counted the slow, obvious way (independent of the service's query)."""
    with pg_conn.cursor() as cur:
        cur.execute(TRUTH, (str(user_id),))
        return cur.fetchone()[0]


@contextmanager
def throwaway_database(name: str):
    """A brand-new empty database on the test server, dropped afterwards; yields its URL."""
    admin = psycopg2.connect(ADMIN_URL)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            cur.execute(f"CREATE DATABASE {name}")
        yield with_database(ADMIN_URL, name)
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


@pytest.fixture
def private_redis(tmp_path):
    """A redis-server of this test's own, which it may stop, flush or restart."""
    server = PrivateRedis(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
def pg_proxy():
    """A cuttable TCP proxy in front of the test Postgres."""
    proxy = TcpProxy(urlsplit(ADMIN_URL).port or 5432)
    yield proxy
    proxy.close()


def proxied_url(database_url: str, proxy: TcpProxy) -> str:
    """The database URL, reaching Postgres through `proxy`."""
    parts = urlsplit(database_url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


@pytest.fixture
def server_env(database_url) -> dict[str, str]:
    """Environment for a gunicorn running the service on the test database and Redis db."""
    return {"DATABASE_URL": database_url, "REDIS_URL": REDIS_URL, "COUNTS_JWT_SECRET": SECRET,
            "COUNTS_JWT_LEEWAY": "0", "COUNTS_POLL_INTERVAL": "7", "COUNTS_OUTBOX_DRAIN_INTERVAL": "0.5",
            "COUNTS_MARKER_TTL": str(MARKER_TTL), "COUNTS_RATE_LIMIT": "0",
            "COUNTS_ANONYMOUS_RATE_LIMIT": "0",
            # Streams still open when a test stops its server close within half a second, not
            # spread over the 5 s a deploy gets (test_streams.py tests the spread itself).
            "COUNTS_STREAM_SHUTDOWN_SECONDS": "0.5"}


@pytest.fixture
def live_server(server_env, pg, redis_client):
    """The service under gunicorn (2 workers), on the test database and Redis db."""
    server = Gunicorn(server_env).start()
    yield server
    server.stop()


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


# --- the fault matrix's figures, printed after the run ------------------------------------------
# A fault test appends its figures to verdict.FIGURES; they ride on its report to the terminal
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
