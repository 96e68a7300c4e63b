"""Fixtures of the fault matrix beyond the root's (start_service, redis_proxy, pg_proxy): a Redis
that evicts."""

import pytest

from tests.support.services import PrivateRedis


@pytest.fixture
def evicting_redis(tmp_path):
    """A private Redis of 2 MB that evicts any key, least recently used first."""
    server = PrivateRedis(tmp_path).start(extra=("--maxmemory", "2mb",
                                                 "--maxmemory-policy", "allkeys-lru"))
    yield server
    server.stop()
