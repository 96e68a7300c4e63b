"""The fault matrix past one machine: a Redis Cluster primary SIGKILLed under traffic, and two
instances of the service sharing Redis and Postgres behind one set of clients.

A failover may roll markers back (invariant 9: the epoch turns that into 200s) and fails the
bumps aimed at the dead primary until its replica takes over (invariant 6: the outbox keeps the
users of that node). Two instances share one outbox, drained by both at once.
"""

from tests.faults.conftest import redis_url_through
from tests.faults.test_gunicorn_processes import kill_and_wait_for_replacement
from tests.faults.traffic import Traffic
from tests.faults.world import build_world


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
            kill_and_wait_for_replacement(two, min(two.worker_pids()))
        traffic.advance(polls=100, acked=20)
    traffic.finish(pg, "two instances, one client set").check()
