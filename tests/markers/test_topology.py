"""counts.markers.topology: REDIS_URL forms, checked at start-up, and the client each topology gets.

Connecting is lazy in every topology (no socket before the first command), so these tests need
no server; the topologies themselves run in test_cluster.py and test_sentinel.py.
"""

import time

import pytest
import redis

from counts.markers import topology
from counts.settings import RedisTopology, Settings, parse_redis_url

SECRET_ENV = {"COUNTS_JWT_SECRET": "a-real-secret-0123456789-0123456789"}


@pytest.mark.parametrize(("url", "expected"), [
    ("redis://127.0.0.1:6379/0", RedisTopology("single", "redis://127.0.0.1:6379/0")),
    ("rediss://:pw@cache.example:6380/2",
     RedisTopology("single", "rediss://:pw@cache.example:6380/2", tls=True)),
    ("unix:///run/redis.sock?db=1", RedisTopology("single", "unix:///run/redis.sock?db=1")),
    ("redis+sentinel://s1:26379,s2:26380,s3/counts",
     RedisTopology("sentinel", "redis+sentinel://s1:26379,s2:26380,s3/counts",
                   (("s1", 26379), ("s2", 26380), ("s3", 26379)), service="counts")),
    ("redis+sentinel://:p%40ss@[::1]:26379/main/3?sentinel_password=sp",
     RedisTopology("sentinel", "redis+sentinel://:p%40ss@[::1]:26379/main/3?sentinel_password=sp",
                   (("::1", 26379),), password="p@ss", sentinel_password="sp", service="main",
                   db=3)),
    ("rediss+sentinel://app:pw@s1/counts/0",
     RedisTopology("sentinel", "rediss+sentinel://app:pw@s1/counts/0", (("s1", 26379),),
                   username="app", password="pw", service="counts", tls=True)),
    ("redis+cluster://10.0.0.1:7000,10.0.0.2",
     RedisTopology("cluster", "redis+cluster://10.0.0.1:7000,10.0.0.2",
                   (("10.0.0.1", 7000), ("10.0.0.2", 6379)))),
    ("rediss+cluster://:pw@c1:7000", RedisTopology("cluster", "rediss+cluster://:pw@c1:7000",
                                                   (("c1", 7000),), password="pw", tls=True)),
])
def test_redis_urls_name_their_topology(url, expected):
    assert parse_redis_url(url) == expected


@pytest.mark.parametrize(("url", "complaint"), [
    ("127.0.0.1:6379", "must start with a scheme"),
    ("memcached://127.0.0.1", "not one of"),
    ("redis+sentinel://s1:26379", "ends in /<service_name>"),
    ("redis+sentinel://s1:26379/counts/zero", "ends in /<service_name>"),
    ("redis+sentinel://s1:26379/a/1/2", "ends in /<service_name>"),
    ("redis+sentinel://s1:port/counts", "is not host:port"),
    ("redis+sentinel://s1/counts?timeout=3", "unknown query parameters"),
    ("redis+cluster://c1:7000/0", "has no path"),
    ("redis+cluster://c1:7000?sentinel_password=x", "unknown query parameters"),
    ("redis+cluster://:secret@,c2", "is not host:port"),
])
def test_bad_redis_urls_fail_at_start_up_saying_why(url, complaint):
    with pytest.raises(RuntimeError, match=complaint) as raised:
        Settings.from_env({**SECRET_ENV, "REDIS_URL": url})
    assert "secret" not in str(raised.value)  # never the password in a message


def connect(url: str):
    """The marker store for `url` with short timeouts."""
    return topology.connect_redis(parse_redis_url(url), 0.1, 4)


def test_each_topology_gets_its_client_without_a_socket():
    assert isinstance(connect("redis://127.0.0.1:1/0"), redis.Redis)
    sentinel = connect("redis+sentinel://127.0.0.1:1/counts/2")
    assert isinstance(sentinel.connection_pool, redis.sentinel.SentinelConnectionPool)
    assert sentinel.connection_pool.connection_kwargs["db"] == 2
    cluster = connect("redis+cluster://127.0.0.1:1")
    assert isinstance(cluster, topology.LazyCluster)


@pytest.mark.parametrize("url", ["redis://127.0.0.1:1/0", "redis+sentinel://127.0.0.1:1/counts",
                                 "redis+cluster://127.0.0.1:1"])
def test_an_unreachable_store_fails_fast_with_a_redis_error_in_every_topology(url):
    """A RedisError is what the read and write paths catch to degrade (not a 500), and it comes
    at once: redis-py's default retries at a Sentinel once made this take 17 s."""
    client = connect(url)
    started = time.monotonic()
    with pytest.raises(redis.RedisError):
        client.get("counts:{x}:marker")
    with pytest.raises(redis.RedisError):
        client.ping()
    assert time.monotonic() - started < 3


def test_replica_urls_are_a_checked_comma_list():
    settings = Settings.from_env({**SECRET_ENV, "DATABASE_REPLICA_URLS":
                                  " postgresql://r1/counts, postgres://u:p@r2:5433/counts ,"})
    assert settings.postgres.replica_urls == ("postgresql://r1/counts",
                                              "postgres://u:p@r2:5433/counts")
    assert Settings.from_env(SECRET_ENV).postgres.replica_urls == ()
    with pytest.raises(RuntimeError, match="DATABASE_REPLICA_URLS") as raised:
        Settings.from_env({**SECRET_ENV, "DATABASE_REPLICA_URLS": "mysql://u:hunter2@r1/db"})
    assert "hunter2" not in str(raised.value)


def test_users_are_grouped_by_slot_as_redis_hashes_their_keys():
    assert topology.user_slot("user-1") == redis.cluster.key_slot(b"counts:{user-1}:marker")
