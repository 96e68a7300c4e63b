"""The marker store by Redis topology: one server, a Sentinel-managed primary, or a Cluster.

The topology is decided here, once, from REDIS_URL. The read and write paths ask for "the marker
store" (what `connect_redis` returns) and for the groups of users one server holds; they never
branch on the topology themselves. (Postgres' primary and replicas: counts.postgres.replicas.)
"""

import contextlib
import functools
import os
import threading
from binascii import crc_hqx
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.crc import REDIS_CLUSTER_HASH_SLOTS
from redis.exceptions import RedisClusterException
from redis.retry import Retry
from redis.sentinel import Sentinel

from counts.markers.readiness import ZeroWaitParser
from counts.settings import RedisTopology

T = TypeVar("T")


def connect_redis(topology: RedisTopology, timeout: float, max_connections: int) -> Any:
    """The marker store for REDIS_URL: no socket is opened until its first command.

    Every topology fails fast: each call waits at most `timeout` per server it needs, and a
    refused or reset connection (a pooled socket the server dropped, a primary that moved) is
    retried once at once, a timeout never: a silent Redis costs a request one timeout.

    A process keeps at most `max_connections` sockets per server. On one server a request that
    finds them all busy waits up to `timeout` for one (a BlockingConnectionPool): under gevent a
    worker has thousands of requests in flight, and redis-py's default pool raised
    MaxConnectionsError past 100. (redis-py's Sentinel and Cluster pools do not block: past the
    bound they raise, which the service answers as Redis unavailable.)
    """
    url = topology.url
    sockets = {"socket_timeout": timeout, "socket_connect_timeout": timeout,
               "max_connections": max_connections}
    # One server and Sentinel check a pooled connection without a trip through gevent's hub
    # (counts.markers.readiness); redis-py's Cluster takes no parser class.
    parser = {"parser_class": ZeroWaitParser}
    once = Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))
    if topology.kind == "single":
        pool = redis.BlockingConnectionPool.from_url(url, timeout=timeout, retry=once,
                                                     health_check_interval=30, **sockets, **parser)
        return redis.Redis(connection_pool=pool)
    auth = {"username": topology.username, "password": topology.password, "ssl": topology.tls}
    if topology.kind == "sentinel":
        # No retry at a Sentinel (redis-py's default waits seconds between three): the next one
        # is asked instead.
        sentinels = {**sockets, "ssl": topology.tls, "password": topology.sentinel_password,
                     "retry": Retry(NoBackoff(), 0)}
        manager = Sentinel(list(topology.nodes), sentinel_kwargs=sentinels)
        # A demoted primary answers our scripts with READONLY (counts.markers): redis-py's
        # Sentinel connection then drops it, asks the sentinels again, and `once` retries there.
        return manager.master_for(topology.service, db=topology.db, retry=once,
                                  health_check_interval=30, **sockets, **auth, **parser)
    return LazyCluster(startup_nodes=[ClusterNode(host, port) for host, port in topology.nodes],
                       retry=Retry(NoBackoff(), 1), health_check_interval=30, **sockets, **auth)


class FailFastCluster(RedisCluster):
    """redis-py's Cluster client, failing the way the rest of the service expects.

    It retries a connection error once (after refreshing the slot map: the primary may have
    moved), never a timeout, and raises only RedisError: its own RedisClusterException (no
    slot covered, no node reachable) would otherwise pass every `except redis.RedisError`.
    """

    ERRORS_ALLOW_RETRY = (redis.ConnectionError,)  # type: ignore[assignment]

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        """Run a command where its keys live; RedisClusterException becomes ConnectionError."""
        try:
            return super().execute_command(*args, **kwargs)
        except RedisClusterException as error:
            raise redis.ConnectionError(f"redis cluster: {error}") from error


class LazyCluster:
    """A FailFastCluster made on first use: its constructor connects to learn the slot map,
    which must happen in the worker (after gunicorn forks) and must not fail the app's start.

    (The live feed's subscribers on a Cluster: see feed_server below.)
    """

    def __init__(self, **kwargs: Any):
        self._kwargs = kwargs
        self._cluster: FailFastCluster | None = None
        self._lock = threading.Lock()

    @property
    def cluster(self) -> FailFastCluster:
        """The cluster client, connecting now if this is the first use (ConnectionError if down)."""
        if self._cluster is None:
            with self._lock:
                if self._cluster is None:
                    try:
                        self._cluster = FailFastCluster(**self._kwargs)
                    except (RedisClusterException, redis.RedisError) as error:
                        raise redis.ConnectionError(f"redis cluster unreachable: {error}") from error
        return self._cluster

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cluster, name)

    def ping(self) -> bool:
        """PING every primary (a primary that does not answer is a shard down)."""
        return bool(self.cluster.ping(target_nodes=RedisCluster.PRIMARIES))

    def close(self) -> None:
        """Close every node's connections, if any were made."""
        if self._cluster is not None:
            self._cluster.close()


# --- groups of users one server holds (one script, one round trip each) --------------------------

@dataclass
class ServerGroup:
    """Users whose keys one server holds, with that server's client."""

    client: redis.Redis
    user_ids: list[str]
    cluster_node: bool  # a Cluster node: a script touching keys of several slots must say so


def user_slot(user_id: str) -> int:
    """The Cluster slot of every key of a user (keys.py hash-tags them all with the user's id):
    Redis hashes only the tag, so the id alone is hashed, as key_slot would (a third of the cost
    of building the key first, per user of a 10,000-user bump)."""
    return crc_hqx(user_id.encode(), 0) % REDIS_CLUSTER_HASH_SLOTS  # Redis' CRC16, as key_slot's


# A refused connection (the node died) or a redirection (its slots moved): worth a fresh slot map.
# A timeout is not: a silent node must cost one timeout.
MOVED_ERRORS = (redis.ConnectionError, redis.exceptions.AskError)


def server_groups(client: Any, user_ids: Iterable[str]) -> list[ServerGroup]:
    """Split users by the server that holds their keys: one group, except on a Cluster."""
    user_ids = list(user_ids)
    if not isinstance(client, LazyCluster):
        return [ServerGroup(client, user_ids, cluster_node=False)] if user_ids else []
    cluster = client.cluster
    by_slot: dict[int, list[str]] = defaultdict(list)
    for uid in user_ids:
        by_slot[user_slot(uid)].append(uid)
    # The slot map as redis-py holds it (get_node_from_slot reads the same, but costs ~5 us a
    # call in its deprecation wrapper and lock: 17 ms of a 10,000-user bump's 38 ms). Read
    # without its lock: a map refreshed meanwhile gives the old node or the new, as a MOVED
    # racing the lookup would; per_server retries a group its node refused.
    slots = cluster.nodes_manager.slots_cache
    by_node: dict[str, list[str]] = defaultdict(list)
    nodes = {}
    for slot, users in by_slot.items():
        holders = slots.get(slot)
        if not holders:
            raise redis.ConnectionError(f"redis cluster: slot {slot} is not covered")
        nodes[holders[0].name] = holders[0]  # the primary first
        by_node[holders[0].name] += users
    return [ServerGroup(cluster.get_redis_connection(nodes[name]), users, cluster_node=True)
            for name, users in by_node.items()]


def per_server(client: Any, user_ids: list[str],
               call: Callable[[ServerGroup], T]) -> list[tuple[ServerGroup, T | Exception]]:
    """Run `call` once per server holding some of the users, in parallel: each group's result
    or error. On a Cluster, groups that failed because their slots moved (a failover, a
    resharding) are tried once more on a fresh slot map."""
    results = _per_server_once(client, user_ids, call)
    moved = [group for group, result in results if isinstance(result, MOVED_ERRORS)]
    if not moved or not isinstance(client, LazyCluster):
        return results
    with contextlib.suppress(RedisClusterException, redis.RedisError):
        client.cluster.nodes_manager.initialize()
    again = _per_server_once(client, [uid for group in moved for uid in group.user_ids], call)
    return [(g, r) for g, r in results if not isinstance(r, MOVED_ERRORS)] + again


def _per_server_once(client: Any, user_ids: list[str],
                     call: Callable[[ServerGroup], T]) -> list[tuple[ServerGroup, T | Exception]]:
    """per_server without the second try; a Cluster that cannot be reached fails every user."""
    try:
        groups = server_groups(client, user_ids)
    except redis.RedisError as error:
        return [(ServerGroup(client, user_ids, cluster_node=False), error)]
    return list(zip(groups, in_parallel([functools.partial(call, g) for g in groups]),
                    strict=True))


class _Threads:
    """A thread pool for the calls to a Cluster's nodes: one per process (threads do not
    survive a fork), made when first needed."""

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()

    def pool(self) -> ThreadPoolExecutor:
        """This process's pool."""
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="counts-node")
                self._pid = os.getpid()
            return self._pool


_threads = _Threads()


def in_parallel(calls: list[Callable[[], T]]) -> list[T | Exception]:
    """Run the calls at once (one Cluster node each): their results, or the Redis errors they
    raised. A single call runs in the caller's thread: one server needs no pool."""
    def settle(call: Callable[[], T]) -> T | Exception:
        try:
            return call()
        except redis.RedisError as error:
            return error

    futures = [_threads.pool().submit(settle, call) for call in calls[1:]]
    return [settle(call) for call in calls[:1]] + [future.result() for future in futures]


# --- the servers a live feed subscribes to (counts.live.subscribers) ------------------------------
# A bump publishes each user's marker on the server holding the user: one server (single,
# Sentinel), or on a Cluster the primary owning the user's slot, on a sharded channel (SPUBLISH,
# see markers._on). A feed holds one subscriber connection per server its waiters' users are on.

def feed_server(client: Any, user_id: str) -> str | None:
    """The server a user's feed channel is published on, as a subscriber's key: None for the one
    server (single; Sentinel, whose connections follow the primary), a Cluster primary's
    "host:port" (None too while the Cluster's slot map is unknown: that subscriber's failure to
    connect refreshes it, see refresh_feed_servers). No network round trip."""
    if not isinstance(client, LazyCluster) or client._cluster is None:
        return None
    holders = client._cluster.nodes_manager.slots_cache.get(user_slot(user_id))  # see server_groups
    return holders[0].name if holders else None


def refresh_feed_servers(client: Any) -> None:
    """Re-learn which server holds which users after a subscriber failed (on a Cluster: a
    primary died, its replica took its slots, or a slot moved). Nothing to learn elsewhere."""
    if isinstance(client, LazyCluster):
        with contextlib.suppress(RedisClusterException, redis.RedisError):
            client.cluster.nodes_manager.initialize()


def feed_connection(client: Any, server: str | None) -> tuple[redis.Connection, bool]:
    """A new, not yet connected, connection to `server` (a feed_server key) for a subscriber,
    and whether it must use sharded pub/sub (SSUBSCRIBE: a Cluster). ConnectionError if the
    Cluster's slot map does not know the server (any more)."""
    if not isinstance(client, LazyCluster):
        pool = client.connection_pool  # Sentinel's connection class asks for the primary
        return pool.connection_class(**pool.connection_kwargs), False
    node = client.cluster.get_node(node_name=server) if server else None
    if node is None:
        raise redis.ConnectionError(f"redis cluster: no node {server} in the slot map")
    pool = client.cluster.get_redis_connection(node).connection_pool
    return pool.connection_class(**pool.connection_kwargs), True
