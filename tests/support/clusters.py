"""Replicated setups the tests start and stop from real server processes on free ports: a Redis
Cluster, a Redis primary and replica watched by Sentinels, a Postgres streaming replica.

Like tests/support/services.py: each process is stopped by its owner's stop() (fixtures call it in
their finalizers, after a failure too), and every wait is bounded.
"""

import contextlib
import random
import shutil
import socket
import subprocess
import uuid
from pathlib import Path

from redis.crc import REDIS_CLUSTER_HASH_SLOTS
from redis.sentinel import Sentinel

from counts.markers import keys, topology
from dev.services import private_postgres, private_replica
from tests.support.proxy import TcpProxy
from tests.support.services import PrivateRedis, free_port, wait_until

CLUSTER_NODE_TIMEOUT_MS = 2000  # how long a Cluster waits before failing a silent primary over
SENTINEL_DOWN_AFTER_MS = 1000  # ... and the Sentinels
SETUP_TIMEOUT = 30.0


def cluster_port() -> int:
    """A free port whose Cluster bus port (+10000) is free too (free_port() may hand out ports
    above 55535, whose bus port does not exist)."""
    for _ in range(100):
        port = random.randrange(20_000, 55_000)
        if all(_bindable(p) for p in (port, port + 10_000)):
            return port
    raise AssertionError("no free port pair for a cluster node")


def _bindable(port: int) -> bool:
    """Whether nothing listens on 127.0.0.1:port now."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def member(directory: Path, args: tuple[str, ...] = (), **options) -> PrivateRedis:
    """One server of a replicated setup: its log in its directory, and a replica that syncs at
    once (not after the default 5 s wait for company). Its process is killed, never stopped
    gracefully: nothing is persisted, so there is nothing to stop gracefully."""
    return PrivateRedis(directory, args=("--logfile", str(directory / "redis.log"),
                                         "--repl-diskless-sync-delay", "0", *args), **options)


class RedisClusterProcesses:
    """A Redis Cluster of `primaries` primaries with `replicas` replicas each, on one machine."""

    def __init__(self, directory: Path, primaries: int = 3, replicas: int = 1):
        self.primaries, self.replicas = primaries, replicas
        args = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(CLUSTER_NODE_TIMEOUT_MS))
        self.nodes = [member(directory / f"node-{n}", args, port=cluster_port())
                      for n in range(primaries * (1 + replicas))]

    @property
    def url(self) -> str:
        """REDIS_URL for the service: every node is a startup node."""
        return "redis+cluster://" + ",".join(node.address for node in self.nodes)

    def start(self) -> "RedisClusterProcesses":
        """Start every node, join them with redis-cli --cluster create, wait for cluster_state ok."""
        for node in self.nodes:
            (node.dir / "nodes.conf").unlink(missing_ok=True)  # a new cluster, whatever ran here
            node.start(timeout=SETUP_TIMEOUT)
        created = subprocess.run([shutil.which("redis-cli") or "redis-cli", "--cluster", "create",
                                  *(node.address for node in self.nodes),
                                  "--cluster-replicas", str(self.replicas), "--cluster-yes"],
                                 capture_output=True, text=True, timeout=SETUP_TIMEOUT, check=False)
        if created.returncode != 0:
            raise AssertionError(f"redis-cli --cluster create failed: {created.stdout[-2000:]}")
        wait_until(self.healthy, timeout=SETUP_TIMEOUT, what="the cluster to be ok on every node")
        return self

    def live(self) -> list[PrivateRedis]:
        """The nodes whose process runs."""
        return [node for node in self.nodes if node.alive]

    def roles(self) -> dict[int, str | int]:
        """port -> "primary", or the port of the primary a replica follows (as a live node says)."""
        described = self.live()[0].client().execute_command("CLUSTER NODES")
        roles = {}
        for address, node in described.items():
            if "fail" in node["flags"] or "noaddr" in node["flags"]:
                continue
            port = int(address.split("@")[0].rsplit(":", 1)[1])
            if "master" in node["flags"]:
                roles[port] = "primary"
            else:
                master = next(a for a, n in described.items() if n["node_id"] == node["master_id"])
                roles[port] = int(master.split("@")[0].rsplit(":", 1)[1])
        return roles

    def healthy(self) -> bool:
        """Every live node says cluster_state:ok, all slots are served by `primaries` primaries,
        and every replica has synced (one that never did cannot be promoted)."""
        for node in self.live():
            info = node.client().cluster("INFO")
            if info["cluster_state"] != "ok" or int(info["cluster_slots_ok"]) != REDIS_CLUSTER_HASH_SLOTS:
                return False
        roles = self.roles()
        # .get: a replica being promoted meanwhile has no link any more (and is not synced yet).
        return list(roles.values()).count("primary") == self.primaries and all(
            self.node(port).client().info("replication").get("master_link_status") == "up"
            for port, role in roles.items() if role != "primary")

    def node(self, port: int) -> PrivateRedis:
        """The node listening on `port`."""
        return next(node for node in self.nodes if node.port == port)

    def primary_of(self, user_id: str) -> PrivateRedis:
        """The primary holding a user's keys now."""
        slot = topology.user_slot(user_id)
        for start, end, primary, *_ in self.live()[0].client().execute_command("CLUSTER SLOTS"):
            if start <= slot <= end:
                return self.node(int(primary[1]))
        raise AssertionError(f"slot {slot} is not served")

    def users_on_every_primary(self, per_primary: int = 2) -> list[uuid.UUID]:
        """Users whose keys live on each primary, `per_primary` each, grouped by primary."""
        found: dict[int, list[uuid.UUID]] = {}
        while len(found) < self.primaries or min(map(len, found.values())) < per_primary:
            user = uuid.uuid4()
            found.setdefault(self.primary_of(str(user)).port, []).append(user)
        return [user for users in found.values() for user in users[:per_primary]]

    def feed_subscribers(self, user) -> int:
        """Connections holding the user's feed channel (a sharded channel) where it lives now."""
        channel = keys.feed_channel(user)
        return self.primary_of(str(user)).client().execute_command(
            "PUBSUB", "SHARDNUMSUB", channel)[1]

    def sharded_subscribers(self) -> dict[int, int]:
        """Per primary (by port), the connections holding sharded channels (CLIENT LIST ssub=)."""
        return {port: sum(int(c.get("ssub", 0)) > 0 for c in self.node(port).client().client_list())
                for port, role in self.roles().items() if role == "primary"}

    def kill_primary(self, users: list[str] = ()) -> tuple[PrivateRedis, PrivateRedis]:
        """SIGKILL a primary that has a live replica (the one holding most of `users`); return it
        and the replica once the cluster has promoted it and is ok again."""
        roles = self.roles()
        held = [self.primary_of(user).port for user in users]
        victim, heir = max(((self.node(p), self.node(r)) for r, p in roles.items()
                            if p != "primary" and self.node(p).alive),
                           key=lambda pair: held.count(pair[0].port))
        victim.kill()
        wait_until(lambda: self.roles().get(heir.port) == "primary" and self.healthy(),
                   timeout=SETUP_TIMEOUT, interval=0.1, what="the cluster to fail over")
        return victim, heir

    def stop(self) -> None:
        """Kill every node."""
        for each in self.nodes:
            each.kill()


SENTINEL_CONFIG = """
port {port}
bind 127.0.0.1
dir {dir}
sentinel monitor counts 127.0.0.1 %(primary)d 2
sentinel down-after-milliseconds counts %(down_after)d
sentinel failover-timeout counts 10000
sentinel parallel-syncs counts 1
"""


class SentinelProcesses:
    """A Redis primary, one replica replicating through a TcpProxy (so a test can freeze the
    link: a bump the primary acknowledged never reaches the replica), and three Sentinels."""

    SERVICE = "counts"

    def __init__(self, directory: Path):
        self.primary = member(directory / "primary")
        self.replica: PrivateRedis | None = None
        self.link: TcpProxy | None = None
        self.sentinels: list[PrivateRedis] = []
        self.dir = directory

    @property
    def url(self) -> str:
        """REDIS_URL for the service."""
        return (f"redis+sentinel://{','.join(s.address for s in self.sentinels)}/"
                f"{self.SERVICE}/0")

    def start(self) -> "SentinelProcesses":
        """Start the pair and the Sentinels; wait until every Sentinel knows the replica."""
        self.primary.start(timeout=SETUP_TIMEOUT)
        self.link = TcpProxy(self.primary.port)
        self.replica = member(self.dir / "replica", ("--replicaof", "127.0.0.1", str(self.link.port)))
        self.replica.start(timeout=SETUP_TIMEOUT)
        wait_until(lambda: self.replica.client().info("replication")["master_link_status"] == "up",
                   timeout=SETUP_TIMEOUT, what="the replica to sync")
        config = SENTINEL_CONFIG % {"primary": self.primary.port,
                                    "down_after": SENTINEL_DOWN_AFTER_MS}
        self.sentinels = [PrivateRedis(self.dir / f"sentinel-{n}", config=config)
                          for n in range(3)]
        for sentinel in self.sentinels:
            sentinel.start(timeout=SETUP_TIMEOUT)
        wait_until(lambda: all(len(s.client().sentinel_slaves(self.SERVICE)) == 1
                               and s.client().sentinel_master(self.SERVICE)["num-other-sentinels"] == 2
                               for s in self.sentinels),
                   timeout=SETUP_TIMEOUT, interval=0.1, what="the sentinels to know everyone")
        return self

    def wait_replicated(self, key: str) -> None:
        """Wait until the replica holds what the primary holds at `key`."""
        value = self.primary.client().get(key)
        wait_until(lambda: self.replica.client().get(key) == value, timeout=SETUP_TIMEOUT,
                   what=f"the replica to copy {key}")

    def primary_port(self) -> int:
        """The primary's port as a client finds it (redis-py asks every Sentinel; during a
        failover, GET-MASTER-ADDR-BY-NAME names the new primary before the Sentinels' own
        state does, and clients see no primary at all)."""
        sentinels = [("127.0.0.1", sentinel.port) for sentinel in self.sentinels]
        return int(Sentinel(sentinels, socket_timeout=5).discover_master(self.SERVICE)[1])

    def fail_over(self) -> None:
        """SIGKILL the primary; return once clients find the promoted replica."""
        self.primary.kill()
        wait_until(lambda: self.primary_port() == self.replica.port,
                   timeout=SETUP_TIMEOUT, interval=0.1, what="the sentinels to fail over")

    def stop(self) -> None:
        """Stop the Sentinels, the pair and the link."""
        for each in [*self.sentinels, self.primary, *([self.replica] if self.replica else [])]:
            each.kill()
        if self.link is not None:
            self.link.close()


class PostgresReplicaPair:
    """A private Postgres primary and a streaming replica of it that applies WAL only after
    `apply_delay` (recovery_min_apply_delay): a replica that is always behind by that much."""

    def __init__(self, directory: Path, apply_delay: str = "2s"):
        self.directory, self.apply_delay = directory, apply_delay
        self.stack = contextlib.ExitStack()
        self.primary_url = self.replica_url = ""
        self.primary_port = self.replica_port = 0

    def start(self) -> "PostgresReplicaPair":
        """initdb and start the primary, pg_basebackup the replica and start it."""
        try:
            self.primary_port = free_port()
            self.replica_port = free_port(besides={self.primary_port})
            self.primary_url = self.stack.enter_context(private_postgres(
                str(self.directory / "primary"), self.primary_port, ("fsync=off",)))
            self.replica_url = self.stack.enter_context(private_replica(
                str(self.directory / "replica"), self.replica_port, self.primary_port,
                ("fsync=off", f"recovery_min_apply_delay={self.apply_delay}")))
        except BaseException:
            self.stack.close()
            raise
        return self

    def stop(self) -> None:
        """Stop the replica, then the primary."""
        self.stack.close()
