"""The service on a real Redis Cluster (3 primaries, 3 replicas): polls, 304s, bumps and batch
reads across slots and nodes, a node that fails part of a bump (invariant 6 per node), and the
live transports on sharded pub/sub.

The failovers under traffic and under open streams are in tests/faults/test_topologies.py.
"""

import itertools
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from counts import markers
from counts.bumps import outbox
from counts.settings import parse_redis_url
from tests.support.api import Api, admin_client, documented, new_user
from tests.support.live_clients import long_poll, open_stream
from tests.support.markers import read_marker
from tests.support.postgres import true_total
from tests.support.services import Gunicorn, LiveClient, wait_until

TIMEOUT = 0.5
WITHIN = 5.0  # seconds a bump may take to reach a live client; the heartbeat is 60


@pytest.fixture
def cluster_app(app_factory, redis_cluster):
    """The app on the cluster."""
    return app_factory(REDIS_URL=redis_cluster.url, COUNTS_REDIS_TIMEOUT=TIMEOUT)


def evalsha_calls(node) -> int:
    """Scripts a node has run so far (INFO commandstats)."""
    stats = node.client().info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("evalsha", "eval"))


def test_polls_304s_and_bumps_across_every_node(cluster_app, redis_cluster, tokens, pg):
    api = Api(cluster_app.test_client(), tokens)
    members = redis_cluster.users_on_every_primary()
    conversation = api.conversation(*members)
    etags = {user: api.counts(user).headers["ETag"] for user in members}
    assert all("nomarker" not in etag for etag in etags.values())
    assert all(api.counts(user, etag=etag).status_code == 304 for user, etag in etags.items())
    assert api.send(conversation, members[0]).status_code == 201
    for user in members[1:]:  # bumped on their own node, each
        answer = api.counts(user, etag=etags[user])
        assert answer.status_code == 200
        assert answer.get_json()["total"] == true_total(pg, user) == 1
    assert api.counts(members[0], etag=etags[members[0]]).status_code == 304  # the sender


def test_a_bump_is_one_script_per_primary(cluster_app, redis_cluster, tokens):
    client = cluster_app.test_client()
    users = [str(uuid.uuid4()) for _ in range(300)]  # every primary holds some
    client.post("/v1/markers/bump", headers=tokens.service(), json={"user_ids": users[:3]})
    primaries = [redis_cluster.node(port) for port, role in redis_cluster.roles().items()
                 if role == "primary"]
    before = {node.port: evalsha_calls(node) for node in primaries}
    response = client.post("/v1/markers/bump", headers=tokens.service(), json={"user_ids": users})
    assert response.get_json() == {"bumped": 300}
    assert {node.port: evalsha_calls(node) - before[node.port] for node in primaries} == \
        {node.port: 1 for node in primaries}


def test_batch_reads_across_nodes(cluster_app, redis_cluster, tokens):
    client = cluster_app.test_client()
    api = Api(client, tokens)
    users = redis_cluster.users_on_every_primary()
    etags = {str(user): api.counts(user).headers["ETag"] for user in users}
    batch = client.post("/v1/unread-counts/batch", headers=tokens.service(),
                        json={"users": [{"user_id": u, "etag": e} for u, e in etags.items()]})
    assert [(r["user_id"], r["status"], r["etag"]) for r in batch.get_json()["users"]] == \
        [(u, 304, e) for u, e in etags.items()]


def test_a_node_that_fails_its_part_of_a_bump_leaves_only_its_users_queued(
        cluster_app, redis_cluster, tokens, pg):
    """One primary stops answering (CLIENT PAUSE: a frozen node, no failover): the other nodes'
    users are bumped, and the outbox holds exactly the frozen node's users until it answers."""
    api = Api(cluster_app.test_client(), tokens)
    res = cluster_app.extensions["counts"]
    members = redis_cluster.users_on_every_primary()
    conversation = api.conversation(*members)
    etags = {user: api.counts(user).headers["ETag"] for user in members}
    frozen = redis_cluster.primary_of(str(members[1]))
    frozen_users = {str(u) for u in members[1:] if redis_cluster.primary_of(str(u)) == frozen}
    frozen.client().execute_command("CLIENT", "PAUSE", 3000, "ALL")
    try:
        assert api.send(conversation, members[0]).status_code == 201  # the write commits
        with pg.cursor() as cur:
            cur.execute("SELECT user_ids FROM marker_outbox")
            queued = {str(u) for (users,) in cur.fetchall() for u in users}
        assert queued == frozen_users
        by_api = cluster_app.test_client().post(  # a service's bump: 202, saying what happened
            "/v1/markers/bump", headers=tokens.service(), json={"user_ids": [str(u) for u in members]})
        on_frozen = sum(redis_cluster.primary_of(str(u)) == frozen for u in members)
        assert (by_api.status_code, by_api.get_json()) == (
            202, {"queued": on_frozen, "bumped": len(members) - on_frozen})
        assert documented(cluster_app, "Queued", by_api.get_json())
        for user in members[1:]:
            if str(user) not in frozen_users:  # bumped on their own node despite the frozen one
                assert api.counts(user, etag=etags[user]).status_code == 200
    finally:
        frozen.client().execute_command("CLIENT", "UNPAUSE")
    assert outbox.drain(res.db, res.redis, res.marker_ttl) == len(
        frozen_users | {str(u) for u in members if redis_cluster.primary_of(str(u)) == frozen})
    for user in members[1:]:
        assert api.counts(user, etag=etags[user]).status_code == 200


def test_the_epoch_differs_by_node_and_names_the_primary(redis_cluster):
    client = markers.connect(parse_redis_url(redis_cluster.url), TIMEOUT, 16)
    try:
        users = redis_cluster.users_on_every_primary(per_primary=1)
        epochs = {}
        for user in users:
            node = redis_cluster.primary_of(str(user))
            token = read_marker(client, user)
            assert token.endswith("." + node.client().info("replication")["master_replid"][:12])
            epochs[node.port] = token.rsplit(".", 1)[1]
        assert len(set(epochs.values())) == redis_cluster.primaries
    finally:
        client.close()


def test_readyz_pings_every_primary(cluster_app):
    assert admin_client(cluster_app).get("/readyz").get_json() == {
        "status": "ok", "postgres": "ok", "redis": "ok", "push": {"queued": 0, "oldest_seconds": 0.0}}


@pytest.fixture
def cluster_server(server_env, redis_cluster, pg, tmp_path):
    """The service under gunicorn on the cluster: one worker (one feed), and heartbeats too
    rare to deliver anything within WITHIN, so what arrives came through the feed."""
    server = Gunicorn({**server_env, "REDIS_URL": redis_cluster.url, "COUNTS_REDIS_TIMEOUT": "0.5",
                       "COUNTS_STREAM_HEARTBEAT": "60"},
                      workers=1, log_path=tmp_path / "gunicorn.log").start()
    yield server
    server.stop()


def test_sse_websocket_and_long_polls_on_every_primary_get_a_bump_through_sharded_pubsub(
        cluster_server, redis_cluster, tokens, pg):
    """One of each live client for users on each primary; one message bumps them all across the
    slots, and each gets it within WITHIN, over one subscriber connection per primary."""
    api, url = Api(LiveClient(cluster_server.url), tokens), cluster_server.url
    members = redis_cluster.users_on_every_primary(per_primary=3)
    kinds = dict(zip(members, itertools.cycle(["sse", "ws", "long-poll"]), strict=False))
    sender = new_user()
    conversation = api.conversation(sender, *members)
    streams, polls = {}, {}
    with ThreadPoolExecutor(max_workers=len(members)) as pool:
        try:
            for user, kind in kinds.items():
                if kind == "long-poll":
                    etag = api.counts(user).headers["ETag"]
                    polls[user] = (etag, pool.submit(long_poll, url, user, tokens.user(user), etag, 20))
                else:
                    streams[user] = open_stream(url, user, tokens.user(user), kind)
            wait_until(lambda: all(redis_cluster.feed_subscribers(u) == 1 for u in members),
                       timeout=WITHIN, what="every channel to be held on its primary")
            assert set(redis_cluster.sharded_subscribers().values()) == {1}  # one per primary
            sent = time.monotonic()
            assert api.send(conversation, sender).status_code == 201
            for user, stream in streams.items():
                event = stream.next(timeout=WITHIN - (time.monotonic() - sent))
                assert event.kind == "counts" and event.counts["total"] == true_total(pg, user) == 1
                assert api.counts(user, etag=event.etag).status_code == 304
            for user, (etag, answer) in polls.items():
                response = answer.result(timeout=max(0.01, WITHIN - (time.monotonic() - sent)))
                assert response.status_code == 200 and response.headers["ETag"] != etag
                assert api.counts(user, etag=response.headers["ETag"]).status_code == 304
                assert response.json()["total"] == 1
        finally:
            for stream in streams.values():
                stream.close()
