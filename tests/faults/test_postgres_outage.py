"""Postgres unreachable mid-traffic, behind a proxy the test cuts (DESIGN.md invariant 7).

Clients whose ETag still matches keep getting 304s from Redis alone; everything that needs
Postgres gets 503 with Retry-After; once Postgres is reachable again the same workers serve
reads and writes, with no restart.
"""

import time

from tests.faults.traffic import Traffic
from tests.faults.world import build_world
from tests.support.postgres import proxied_url


def test_postgres_cut_keeps_matching_etags_on_304_and_recovers_without_restart(
        start_service, private_redis, pg_proxy, database_url, pg):
    """Postgres cut off: matching ETags 304, others 503 + Retry-After; the same workers recover."""
    service = start_service(private_redis.url, proxied_url(database_url, pg_proxy))
    world = build_world(service.url)
    busy_users = sorted({user for c in world.busy for user in world.members[c]})
    workers = service.worker_pids()
    with Traffic(service.url, world) as traffic:
        traffic.advance(polls=100, acked=20)
        traffic.quiesce()  # nothing bumps anyone between the idle devices' polls and the cut
        traffic.snapshot_idle()
        with traffic.fault("Postgres unreachable") as fault:
            pg_proxy.set_mode("cut")
            cut_at = time.monotonic()
            traffic.write_to(world.conversations)  # every write now needs the missing Postgres
            matching = traffic.probe_idle()  # nobody was bumped: every idle ETag still matches
            bumped = traffic.bump(busy_users)  # a backend service bumps through Redis alone
            traffic.advance(polls=100, writes=30)
            pg_proxy.set_mode("forward")
        traffic.advance(polls=100, acked=30)
    figures = traffic.finish(pg, "postgres cut and restored")
    assert [o.status for o in matching] == [304] * len(matching), "a matching ETag got no 304"
    assert bumped.status == 200
    during = [o for o in traffic.outcomes if cut_at < o.started and o.ended < fault.healed]
    statuses = {(o.kind, o.status) for o in during}
    assert statuses <= {("poll", 304), ("poll", 503), ("send", 503), ("read", 503),
                        ("notify", 503), ("unread", 503), ("bump", 200)}, \
        f"only Redis can answer during the cut: {statuses}"
    assert ("poll", 503) in statuses and ("send", 503) in statuses
    unbumped = {client.name for client in traffic.active if client.user not in busy_users}
    quiet_polls = {o.status for o in during if o.kind == "poll" and o.client in unbumped}
    assert quiet_polls == {304}, f"unbumped devices got {quiet_polls} instead of 304s"
    assert service.worker_pids() == workers, "recovery restarted workers"
    figures.check()
