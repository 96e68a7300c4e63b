"""Bumps Redis missed (unreachable, or a writer that died after commit) take effect later.

DESIGN.md invariant 6: writes commit while Redis is unreachable, reads answer from Postgres, and
the transactional outbox bumps every missed user once Redis answers, so no device is left on a
stale 304. Quiet users (conversations nobody writes to after the fault) are the sharp case: only
the outbox can bump them.
"""

import os
import signal
import subprocess
import sys
import uuid

import requests

from counts.identity import mint_token
from tests.faults.traffic import Traffic
from tests.faults.world import build_world
from tests.support import ROOT
from tests.support.environment import SECRET
from tests.support.postgres import true_total
from tests.support.proxy import redis_url_through
from tests.support.services import wait_until


def test_bumps_missed_while_redis_is_unreachable_take_effect_when_it_returns(
        start_service, redis_proxy, pg):
    """Redis cut off (its markers kept): once back, no device stays on a stale 304."""
    service = start_service(redis_url_through(redis_proxy))
    world = build_world(service.url)
    with Traffic(service.url, world, unavailable_ok=False) as traffic:
        traffic.advance(polls=100, acked=20)
        traffic.quiesce()  # the idle devices' ETags stay current up to the outage...
        held = traffic.snapshot_idle()  # ...and name markers that outlive it
        with traffic.fault("Redis unreachable"):
            redis_proxy.set_mode("cut")
            traffic.write_to(world.conversations)
            traffic.advance(polls=50, acked=30, every_conversation=True)
            traffic.quiesce()  # every write of the outage has failed its bump...
            traffic.write_to(world.busy)  # ...and quiet users get no later one: only the outbox
            redis_proxy.set_mode("forward")
        traffic.advance(polls=100, acked=20)
    figures = traffic.finish(pg, "redis unreachable during writes")
    exposed = [c.name for c in traffic.idle if held[c.name] != true_total(pg, c.user)
               and c.user in quiet_users(world)]
    assert len(exposed) == len(world.quiet), f"only {exposed} had counts change in the outage"
    figures.check()


def test_writer_killed_between_commit_and_bump_is_repaired(start_service, private_redis,
                                                           database_url, pg):
    """A writer SIGKILLed after commit, before its bump: the drainer bumps the recipient."""
    service = start_service(private_redis.url)
    world = build_world(service.url)
    conversation = world.quiet[0]
    sender, recipient = world.members[conversation]
    body = f"dying words {uuid.uuid4()}"
    with Traffic(service.url, world) as traffic:
        traffic.write_to(world.busy)  # only the outbox can bump the recipient
        traffic.advance(polls=100, acked=20)
        traffic.snapshot_idle()
        recipient_etag = next(c.etag for c in traffic.idle if c.user == recipient)
        with traffic.fault("writer killed between commit and bump"):
            writer = subprocess.run(
                [sys.executable, "-m", "tests.faults.dying_writer", conversation, sender, body],
                cwd=ROOT, capture_output=True, timeout=60, check=False,
                env={**os.environ, "DATABASE_URL": database_url,
                     "REDIS_URL": private_redis.url, "COUNTS_JWT_SECRET": SECRET})
            assert writer.returncode == -signal.SIGKILL, writer.stderr.decode()[-2000:]
            assert message_count(pg, body) == 1  # committed
            wait_until(lambda: etag_answer(service.url, recipient, recipient_etag) == 200,
                       timeout=10, what="the drainer to bump the dead writer's recipient")
        traffic.advance(polls=100, acked=20)
    traffic.finish(pg, "writer killed between commit and bump").check()


def quiet_users(world) -> set[str]:
    """Users of the one-way conversations that writers may stop writing to."""
    return {user for conversation in world.quiet for user in world.members[conversation]}


def message_count(pg, body: str) -> int:
    """How many messages Postgres holds with this body."""
    with pg.cursor() as cur:
        cur.execute("SELECT count(*) FROM messages WHERE body = %s", (body,))
        return cur.fetchone()[0]


def etag_answer(url: str, user: str, etag: str) -> int:
    """The status a poll by `user` holding `etag` gets now."""
    return requests.get(f"{url}/v1/users/{user}/unread-counts", timeout=10,
                        headers={"Authorization": f"Bearer {mint_token(SECRET, user)}",
                                 "If-None-Match": etag}).status_code
