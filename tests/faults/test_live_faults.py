"""No missed update on the live transports (DESIGN.md invariant 10), under faults.

Every user holds an SSE stream, a WebSocket and a long-poll while writers write; then Redis
restarts empty, is flushed, has its subscriber connections killed, or a worker is SIGKILLed. Once
the writes stop, every device must show Postgres' truth through its own connection within
seconds (heartbeats are set far longer, so they cannot hide a lost wake-up), and no connection
may send the same ETag twice in a row.
"""


import os
import signal
import threading

import pytest

from tests.faults.live_traffic import HEARTBEAT, LiveTraffic
from tests.faults.world import build_world


@pytest.fixture
def live_service(start_service, private_redis):
    """The service (2 workers) on the test's own Redis, with heartbeats longer than the verdict."""
    return start_service(private_redis.url, COUNTS_STREAM_HEARTBEAT=str(HEARTBEAT))


def test_live_devices_miss_nothing_through_a_redis_restart_without_data(live_service, private_redis,
                                                                       pg):
    """The last writes land while Redis is down: their bumps wait in the outbox, and the drainer
    may publish them before the subscribers are back (the re-check after reconnecting finds them)."""
    world = build_world(live_service.url)
    with LiveTraffic(live_service.url, world) as traffic:
        for _ in range(2):
            traffic.advance(200)
            private_redis.stop(save=False)
            traffic.faults += 1
            traffic.advance(50)  # written to Postgres, bumps queued in the outbox
            private_redis.start()
        traffic.finish(pg, "live: redis restarted empty x2").check()


def test_live_devices_miss_nothing_through_flushall(live_service, private_redis, pg):
    world = build_world(live_service.url)
    with LiveTraffic(live_service.url, world) as traffic, private_redis.client() as admin:
        traffic.advance(200)
        for _ in range(3):
            admin.flushall()
            traffic.faults += 1
            traffic.advance(150)
        traffic.finish(pg, "live: redis FLUSHALL x3", admin).check()


def test_live_devices_miss_nothing_when_the_subscribers_are_cut(live_service, private_redis, pg):
    """CLIENT KILL TYPE pubsub: each worker's subscriber loses its socket mid-traffic (messages
    published until it has subscribed again are lost: the re-check after reconnecting finds them)."""
    world = build_world(live_service.url)
    with LiveTraffic(live_service.url, world) as traffic, private_redis.client() as admin:
        traffic.advance(200)
        cutting = threading.Event()

        def cut_subscribers() -> None:
            """Kill every subscriber connection every 20 ms until told to stop."""
            while not cutting.wait(0.02):
                traffic.faults += admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")

        cutter = threading.Thread(target=cut_subscribers, daemon=True)
        cutter.start()
        traffic.advance(150)  # and the writes stop right after the last cut
        cutting.set()
        cutter.join(5)
        assert traffic.faults >= 10
        traffic.finish(pg, "live: subscribers cut over and over").check()


def test_live_devices_miss_nothing_when_a_worker_is_killed(live_service, pg):
    """Devices on a SIGKILLed worker reconnect with the ETag they hold: a resumed stream sends
    the current counts if they moved meanwhile, and nothing if not."""
    world = build_world(live_service.url)
    with LiveTraffic(live_service.url, world) as traffic:
        traffic.advance(250)
        for victim in sorted(live_service.worker_pids()):
            os.kill(victim, signal.SIGKILL)  # writes go on while its devices reconnect
            traffic.faults += 1
            traffic.advance(15)
        traffic.finish(pg, "live: worker SIGKILLed x2").check()
        assert sum(device.connections for device in traffic.devices) > len(traffic.devices)




def test_live_devices_miss_nothing_without_faults(live_service, private_redis, pg):
    """The baseline: writes under load, nothing broken."""
    world = build_world(live_service.url)
    with LiveTraffic(live_service.url, world) as traffic, private_redis.client() as admin:
        traffic.advance(600)
        traffic.finish(pg, "live: no fault", admin).check()
