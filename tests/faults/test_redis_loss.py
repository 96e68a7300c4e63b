"""Redis losing its markers mid-traffic (restart without persistence, FLUSHALL, eviction).

A lost marker must come back as one no client holds (DESIGN.md invariant 4), so no device ends
on a stale 304; reads and writes never fail for it (invariant 6).
"""

from counts.markers import keys
from tests.faults.traffic import Traffic
from tests.faults.world import build_world

JUNK_VALUE = b"x" * 64 * 1024


def test_redis_restarted_empty_leaves_no_client_stale(start_service, private_redis, pg):
    """Redis stops, writes go on, Redis starts empty: every device ends on Postgres' truth."""
    service = start_service(private_redis.url)
    world = build_world(service.url)
    with Traffic(service.url, world, unavailable_ok=False) as traffic:
        traffic.advance(polls=100, acked=20)
        traffic.snapshot_idle()
        with traffic.fault("Redis stopped, then started empty"):
            private_redis.stop(save=False)
            traffic.advance(polls=50, acked=20, every_conversation=True)
            private_redis.start()
        traffic.advance(polls=100, acked=20)
    traffic.finish(pg, "redis restarted empty").check()


def test_flushall_mid_traffic_leaves_no_client_stale(start_service, private_redis, pg):
    """Five FLUSHALLs under traffic: no marker is reissued, every device ends on the truth."""
    service = start_service(private_redis.url)
    world = build_world(service.url)
    with Traffic(service.url, world, unavailable_ok=False) as traffic, \
            private_redis.client() as admin:
        traffic.advance(polls=100, acked=20)
        traffic.snapshot_idle()
        for _ in range(5):
            with traffic.fault("FLUSHALL"):
                admin.flushall()
            traffic.advance(polls=40, acked=10)
    traffic.finish(pg, "redis FLUSHALL x5").check()


def test_marker_eviction_mid_traffic_leaves_no_client_stale(start_service, evicting_redis, pg):
    """Junk pushes a 2 MB allkeys-lru Redis to evict markers under traffic: nobody ends stale."""
    service = start_service(evicting_redis.url)
    world = build_world(service.url)
    with Traffic(service.url, world, unavailable_ok=False) as traffic, \
            evicting_redis.client() as admin:
        traffic.advance(polls=100, acked=20)
        traffic.snapshot_idle()
        with traffic.fault("markers evicted under maxmemory"):
            for batch in range(8):  # 8 MB of junk through 2 MB, between polls and writes
                for n in range(16):
                    admin.set(f"junk:{batch}:{n}", JUNK_VALUE)
                traffic.advance(polls=10, acked=2)
        traffic.advance(polls=100, acked=20)
        junk_evicted = 8 * 16 - sum(1 for _ in admin.scan_iter("junk:*"))
        markers_evicted = admin.info("stats")["evicted_keys"] - junk_evicted
        markers_left = sum(1 for _ in admin.scan_iter(keys.marker_key("*")))
    figures = traffic.finish(pg, "redis marker eviction")
    print(f"eviction: {markers_evicted} markers evicted, {markers_left} present at the end")
    assert markers_evicted > 0, "the junk evicted no marker: the test proved nothing"
    figures.check()
