"""The fault matrix past one machine: a Redis Cluster primary SIGKILLed under traffic and under
open streams, and two instances of the service sharing Redis and Postgres behind one set of
clients.

A failover may roll markers back (invariant 9: the epoch turns that into 200s) and fails the
bumps aimed at the dead primary until its replica takes over (invariant 6: the outbox keeps the
users of that node). Two instances share one outbox, drained by both at once.
"""

import itertools
import time

from tests.faults.traffic import Traffic
from tests.faults.world import build_world
from tests.support.api import Api, new_user
from tests.support.live_clients import counts_reaching, open_stream, settled
from tests.support.postgres import true_total
from tests.support.proxy import redis_url_through
from tests.support.services import LiveClient, wait_until

STREAM_WITHIN = 8.0  # seconds from the failover's end to the bump on every stream (heartbeat: 60)


def left_of(started: float) -> float:
    """Seconds left of STREAM_WITHIN since `started`."""
    return STREAM_WITHIN - (time.monotonic() - started)


def test_a_cluster_primary_killed_under_traffic_leaves_no_client_stale(start_service,
                                                                       redis_cluster, pg):
    """SIGKILL the primary holding most users; after the failover every device ends on the truth."""
    service = start_service(redis_cluster.url)
    world = build_world(service.url)
    holders = {user: redis_cluster.primary_of(user).port for user in world.users}
    with Traffic(service.url, world) as traffic:
        traffic.advance(polls=100, acked=20)
        traffic.snapshot_idle()
        with traffic.fault("Redis Cluster primary SIGKILLed"):
            victim, heir = redis_cluster.kill_primary(world.users)  # returns once failed over
        traffic.advance(polls=100, acked=30, every_conversation=True)
    figures = traffic.finish(pg, "redis cluster primary SIGKILLed")
    moved = [user for user, port in holders.items() if port == victim.port]
    print(f"cluster failover: {len(moved)} of {len(world.users)} users moved from "
          f"{victim.address} to {heir.address}")
    assert moved, "the dead primary held none of the users: the test proved nothing"
    figures.check()


def test_streams_on_a_killed_cluster_primary_get_the_next_bump_from_the_promoted_replica(
        start_service, redis_cluster, pg, tokens):
    """SSE and WebSocket streams of users on every primary; the primary holding most of them is
    SIGKILLed. Once its replica serves its slots, one message bumps every user: each stream gets
    it within STREAM_WITHIN (its subscriber moved to the promoted replica and re-checked), and
    holds the marker a poll answers 304 to: no stale client."""
    service = start_service(redis_cluster.url, COUNTS_STREAM_HEARTBEAT="60")
    api = Api(LiveClient(service.url), tokens)
    members = redis_cluster.users_on_every_primary(per_primary=2)
    holders = {user: redis_cluster.primary_of(str(user)).port for user in members}
    sender = new_user()
    conversation = api.conversation(sender, *members)
    streams = {}
    try:
        for user, kind in zip(members, itertools.cycle(["sse", "ws"]), strict=False):
            streams[user] = open_stream(service.url, user, tokens.user(user), kind)
        wait_until(lambda: all(redis_cluster.feed_subscribers(u) == 1 for u in members),
                   timeout=STREAM_WITHIN, what="every channel to be held on its primary")
        victim, heir = redis_cluster.kill_primary([str(u) for u in members])
        moved = [user for user, port in holders.items() if port == victim.port]
        assert moved and all(redis_cluster.primary_of(str(u)) == heir for u in moved)
        failed_over = time.monotonic()
        assert api.send(conversation, sender).status_code == 201
        for user, stream in streams.items():
            event = counts_reaching(stream, 1, timeout=left_of(failed_over))
            event = settled(api, user, stream, event, failed_over + STREAM_WITHIN)
            assert event.counts["total"] == true_total(pg, user) == 1
        assert all(redis_cluster.feed_subscribers(u) == 1 for u in moved)  # held on the heir
        print(f"cluster failover under streams: {len(moved)} of {len(members)} streamed users "
              f"moved from {victim.address} to {heir.address}; every stream bumped "
              f"{time.monotonic() - failed_over:.2f} s after the failover")
    finally:
        for stream in streams.values():
            stream.close()


def test_two_instances_behind_one_client_set_leave_no_client_stale(
        start_service, private_redis, redis_proxy, pg):
    """Requests alternate between two services; Redis is cut (both drain the outbox), flushed,
    and one instance loses a worker: every device ends on the truth, no write is lost."""
    redis_url = redis_url_through(redis_proxy)
    one, two = start_service(redis_url), start_service(redis_url)
    world = build_world(one.url)
    with Traffic([one.url, two.url], world, retry_dropped=True) as traffic:
        traffic.advance(polls=100, acked=20)
        traffic.snapshot_idle()
        with traffic.fault("Redis unreachable from both instances"):
            redis_proxy.set_mode("cut")
            traffic.advance(polls=50, acked=30, every_conversation=True)
            redis_proxy.set_mode("forward")
        traffic.advance(polls=100, acked=20)
        with traffic.fault("FLUSHALL"), private_redis.client() as admin:
            admin.flushall()
        traffic.advance(polls=100, acked=20)
        with traffic.fault("a worker of one instance SIGKILLed"):
            two.replace_worker(min(two.worker_pids()))
        traffic.advance(polls=100, acked=20)
    traffic.finish(pg, "two instances, one client set").check()
