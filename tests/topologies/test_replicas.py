"""200s from a Postgres streaming replica, never older than the marker (DESIGN.md invariant 11).

The replica applies WAL two seconds late (recovery_min_apply_delay), so a poll right after a
write always finds it behind: it must be answered by the primary, and once the replica has
replayed the write, by the replica. A mutant that skips the replica's check is required to serve
old counts under the new marker, so the test cannot pass vacuously.
"""

import psycopg2
import pytest

from counts.observability import metrics
from counts.postgres import migrations, replicas
from counts.postgres.pool import Database
from counts.postgres.queries import replication
from tests.support.api import Api, admin_client, documented, new_user
from tests.support.clusters import PostgresReplicaPair
from tests.support.postgres import proxied_url, with_database
from tests.support.proxy import TcpProxy
from tests.support.services import wait_until

DATABASE = "counts_replica_test"
ROUNDS = 3


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A private primary with the schema, and its replica (2 s behind); stopped after."""
    servers = PostgresReplicaPair(tmp_path_factory.mktemp("postgres-pair"), apply_delay="2s")
    try:
        servers.start()
        admin = psycopg2.connect(servers.primary_url)
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE {DATABASE}")
        admin.close()
        db = Database(with_database(servers.primary_url, DATABASE), timeout=10, pool_size=1)
        migrations.upgrade(db)
        db.close()
        with psycopg2.connect(servers.primary_url) as conn:
            wait_until(lambda: caught_up(servers.replica_url, conn), timeout=30,
                       what="the replica to have the schema")
        yield servers
    finally:
        servers.stop()


@pytest.fixture
def urls(pair) -> tuple[str, str]:
    """The test database on the primary and on the replica."""
    return with_database(pair.primary_url, DATABASE), with_database(pair.replica_url, DATABASE)


@pytest.fixture
def primary(urls):
    """An autocommit connection to the primary."""
    conn = psycopg2.connect(urls[0])
    conn.autocommit = True
    yield conn
    conn.close()


def caught_up(replica_url: str, primary) -> bool:
    """Whether the replica has replayed everything the primary has written so far."""
    with primary.cursor() as cur:
        position = replication.wal_position(cur)
    with psycopg2.connect(replica_url) as conn, conn.cursor() as cur:
        return replication.replayed_position(cur) >= position


def outcomes() -> dict[str, float]:
    """counts_replica_reads_total by outcome, so far in this process."""
    return {sample.labels["outcome"]: sample.value
            for sample in metrics.REPLICA_READS.collect()[0].samples
            if sample.name.endswith("_total")}


def delta(before: dict[str, float]) -> dict[str, int]:
    """Outcomes counted since `before`."""
    return {k: int(v - before.get(k, 0)) for k, v in outcomes().items() if v != before.get(k, 0)}


@pytest.mark.parametrize("check", ["checked", "skipped (mutant)"])
def test_a_poll_right_after_a_write_never_sees_old_counts(check, urls, primary, app_factory,
                                                          tokens, monkeypatch):
    if check != "checked":  # the replica answers whatever it has replayed
        monkeypatch.setattr(replicas, "_if_replayed",
                            lambda cur, position, work, *args: work(cur, *args))
    app = app_factory(DATABASE_URL=urls[0], DATABASE_REPLICA_URLS=[urls[1]])
    api = Api(app.test_client(), tokens)
    alice, bob = new_user(), new_user()
    conversation = api.conversation(alice, bob)
    etag = api.counts(bob).headers["ETag"]
    seen, before = [], outcomes()
    for sent in range(1, ROUNDS + 1):
        assert api.send(conversation, alice).status_code == 201
        answer = api.counts(bob, etag=etag)  # right away: the replica is 2 s behind
        assert answer.status_code == 200
        seen.append(answer.get_json()["total"])
        etag = answer.headers["ETag"]
        wait_until(lambda: caught_up(urls[1], primary), timeout=30, what="the replica")
        again = api.counts(bob)  # the replica has the write now: it answers
        assert again.get_json()["total"] == sent
    counted = delta(before)
    share = counted.get("replica", 0) / sum(counted.values())
    print(f"replica reads ({check}): {counted}, replica share of 200s {share:.0%}")
    if check == "checked":
        assert seen == list(range(1, ROUNDS + 1)), "a 200 older than its marker"
        assert counted == {"primary_lagging": ROUNDS, "replica": ROUNDS}
    else:
        assert seen != list(range(1, ROUNDS + 1)), "the mutant should have served old counts"


def test_a_user_without_a_recorded_position_is_read_from_the_primary(urls, app_factory,
                                                                     tokens):
    app = app_factory(DATABASE_URL=urls[0], DATABASE_REPLICA_URLS=[urls[1]])
    before = outcomes()
    assert Api(app.test_client(), tokens).counts(new_user()).status_code == 200  # never bumped
    assert delta(before) == {"primary_no_lsn": 1}


def test_a_replica_down_leaves_reads_to_the_primary_and_readyz_says_so(
        urls, primary, app_factory, tokens):
    proxy = TcpProxy(int(urls[1].rsplit(":", 1)[1].split("/")[0]))
    try:
        app = app_factory(DATABASE_URL=urls[0], DATABASE_REPLICA_URLS=[proxied_url(urls[1], proxy)],
                          COUNTS_PG_TIMEOUT=1.0)
        api = Api(app.test_client(), tokens)
        alice, bob = new_user(), new_user()
        conversation = api.conversation(alice, bob)
        api.send(conversation, alice)
        wait_until(lambda: caught_up(urls[1], primary), timeout=30, what="the replica")
        ready = admin_client(app).get("/readyz").get_json()
        assert ready["status"] == "ok" and ready["postgres_replicas"][0]["state"] == "ok"
        assert documented(app, "AdminReadiness", ready)
        proxy.set_mode("cut")
        before = outcomes()
        assert api.counts(bob).get_json()["total"] == 1
        assert api.counts(bob).get_json()["total"] == 1  # no retry of the replica meanwhile
        assert delta(before) == {"primary_replica_down": 2}
        ready = admin_client(app).get("/readyz")
        assert ready.status_code == 200
        assert ready.get_json()["status"] == "degraded"
        assert ready.get_json()["postgres_replicas"] == [
            {"name": f"127.0.0.1:{proxy.port}", "state": "unavailable"}]
        assert documented(app, "AdminReadiness", ready.get_json())
    finally:
        proxy.close()


def test_a_server_that_is_not_in_recovery_is_not_used_as_a_replica(urls, app_factory, tokens):
    app = app_factory(DATABASE_URL=urls[0], DATABASE_REPLICA_URLS=[urls[0]])  # the primary
    api = Api(app.test_client(), tokens)
    alice, bob = new_user(), new_user()
    api.send(api.conversation(alice, bob), alice)
    before = outcomes()
    assert api.counts(bob).get_json()["total"] == 1
    assert delta(before) == {"primary_replica_down": 1}
    assert admin_client(app).get("/readyz").get_json()["postgres_replicas"][0]["state"] == \
        "not_a_replica"


def test_the_batch_reads_from_the_replica_only_once_it_has_every_users_write(
        urls, primary, app_factory, tokens):
    app = app_factory(DATABASE_URL=urls[0], DATABASE_REPLICA_URLS=[urls[1]])
    client = app.test_client()
    api = Api(client, tokens)
    alice, bob, carol = new_user(), new_user(), new_user()
    conversation = api.conversation(alice, bob, carol)

    def batch() -> dict[str, int]:
        body = {"users": [{"user_id": str(u), "etag": None} for u in (bob, carol)]}
        answer = client.post("/v1/unread-counts/batch", headers=tokens.service(), json=body)
        return {r["user_id"]: r["counts"]["total"] for r in answer.get_json()["users"]}

    api.send(conversation, alice)
    before = outcomes()
    assert batch() == {str(bob): 1, str(carol): 1}
    assert delta(before) == {"primary_lagging": 1}
    wait_until(lambda: caught_up(urls[1], primary), timeout=30, what="the replica")
    before = outcomes()
    assert batch() == {str(bob): 1, str(carol): 1}
    assert delta(before) == {"replica": 1}
