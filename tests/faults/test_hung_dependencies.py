"""A dependency that accepts connections and never answers (or freezes on open ones).

'hang': existing connections drop, new ones are accepted and never answered. 'stall': every
connection stays open and no byte passes (a frozen server or a partition). config.py's contract
for COUNTS_PG_TIMEOUT and COUNTS_REDIS_TIMEOUT: "A hung dependency must cost a request this long
at most, never a worker forever." So every request gives up within its timeout (plus slack for
the work around it), and /healthz, which needs neither, keeps answering at once.

The traffic here sends at most 7 requests at a time, fewer than a worker's 8 threads, so no
request waits for a thread and what a client measures is what the request itself cost.
"""

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.faults.traffic import Traffic
from tests.faults.world import build_world
from tests.support.api import new_user
from tests.support.environment import fault_env
from tests.support.postgres import proxied_url
from tests.support.proxy import redis_url_through
from tests.support.services import Gunicorn, wait_until

TIMEOUT = 1.0  # both dependencies' timeout here: far above the slack, so overruns stand out
SLACK = 0.5  # seconds for a request's own work on a busy 2-CPU machine
HEALTH_BOUND = 1.0  # /healthz needs no dependency: it answers unless threads are stuck
WORK = ("poll", "send", "read")
LIGHT = {"pollers": 4, "writers": 2, "probe_health": True}  # 7 requests in flight at most
ENV = {"COUNTS_PG_TIMEOUT": str(TIMEOUT), "COUNTS_REDIS_TIMEOUT": str(TIMEOUT)}


@pytest.mark.parametrize("mode", ["hang", "stall"])
def test_hung_postgres_costs_a_request_its_timeout_not_a_worker(
        mode, start_service, private_redis, pg_proxy, database_url, pg):
    """Postgres silent: reads and writes that need it get a 503 within COUNTS_PG_TIMEOUT."""
    service = start_service(private_redis.url, proxied_url(database_url, pg_proxy), **ENV)
    world = build_world(service.url)
    with Traffic(service.url, world, **LIGHT) as traffic:
        traffic.advance(polls=60, acked=20)
        traffic.snapshot_idle()
        with traffic.fault(f"Postgres {mode}"):
            pg_proxy.set_mode(mode)
            traffic.bump(world.users)  # through Redis alone: now every poll needs Postgres
            traffic.advance(polls=12, writes=4, timeout=60)
            pg_proxy.set_mode("forward")
        traffic.advance(polls=60, acked=20)
    figures = traffic.finish(pg, f"postgres {mode}")
    assert_gave_up_in_time(traffic.slowest("during"), f"Postgres {mode}")
    figures.check()


@pytest.mark.parametrize("mode", ["hang", "stall"])
def test_hung_redis_costs_a_request_its_timeout_not_a_worker(mode, start_service, redis_proxy,
                                                             pg):
    """Redis silent: reads answer from Postgres, writes commit, within COUNTS_REDIS_TIMEOUT."""
    service = start_service(redis_url_through(redis_proxy), **ENV)
    world = build_world(service.url)
    with Traffic(service.url, world, unavailable_ok=False, **LIGHT) as traffic:
        traffic.advance(polls=60, acked=20)
        traffic.snapshot_idle()
        with traffic.fault(f"Redis {mode}"):
            redis_proxy.set_mode(mode)
            traffic.advance(polls=12, acked=4, timeout=60)
            redis_proxy.set_mode("forward")
        traffic.advance(polls=60, acked=20)
    figures = traffic.finish(pg, f"redis {mode}")
    assert_gave_up_in_time(traffic.slowest("during"), f"Redis {mode}")
    figures.check()


def assert_gave_up_in_time(slowest: dict[str, float], fault: str) -> None:
    """Every request within the timeout plus slack; /healthz quick throughout."""
    print(f"{fault}: slowest request of each kind (s): {slowest}")
    assert max(slowest[kind] for kind in WORK if kind in slowest) <= TIMEOUT + SLACK, \
        f"{fault}, timeouts {TIMEOUT}s: requests took up to (s) {slowest}"
    assert slowest["health"] <= HEALTH_BOUND, f"{fault}: /healthz took {slowest['health']}s"


def test_a_request_waiting_on_postgres_leaves_its_worker_free(private_redis, pg_proxy, database_url,
                                                              pg, tokens, tmp_path):
    """gevent: psycopg2 waits through counts.postgres.pool's callback on select.select, which gevent makes
    cooperative. While one request waits on a frozen Postgres, the same (single) worker answers
    a 304 from Redis; a blocking wait would hold the whole worker until the timeout."""
    env = {**fault_env(proxied_url(database_url, pg_proxy), private_redis.url),
           "COUNTS_PG_TIMEOUT": "5"}
    server = Gunicorn(env, workers=1, log_path=tmp_path / "gunicorn.log").start()
    try:
        waiting, answering = new_user(), new_user()
        url = f"{server.url}/v1/users/{{}}/unread-counts"
        etag = requests.get(url.format(answering), headers=tokens.user(answering),
                            timeout=10).headers["ETag"]
        pg_proxy.set_mode("stall")
        with ThreadPoolExecutor(1) as pool:
            slow = pool.submit(requests.get, url.format(waiting), headers=tokens.user(waiting),
                               timeout=20)  # needs Postgres: held in the stall
            wait_until(lambda: pg_proxy.held > 0, what="the query to reach the frozen Postgres")
            fast = requests.get(url.format(answering), timeout=10,
                                headers={**tokens.user(answering), "If-None-Match": etag})
            assert fast.status_code == 304
            assert not slow.done()  # still waiting on Postgres, and the worker answered anyway
            pg_proxy.set_mode("forward")
            assert slow.result().status_code in (200, 503)
    finally:
        server.stop()
