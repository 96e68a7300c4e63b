"""What one user costs Redis, by operation and topology: the figures docs/SCALING.md multiplies.

Against the bench's private Redis: bytes in and out, commands (those inside scripts included)
and server CPU per poll and per bumped user, memory per marker, LSN record and rate counter;
then a 10,000-user bump on one server and on a 3-primary Redis Cluster (started from the tests'
harness), without and with LSN records (what Postgres replicas add).
"""

import time
import uuid
from dataclasses import dataclass, field

import redis
from tqdm import tqdm

from bench.scaling import FANOUTS, Timing
from bench.services import OUT
from counts import markers
from counts.markers import ratelimit
from counts.settings import parse_redis_url

USERS = 2_000  # polled, each once per round
ROUNDS = 5
RATE_WINDOW = 60


@dataclass
class Cost:
    """Redis' side of one operation, averaged."""

    bytes_in: float
    bytes_out: float
    commands: float  # the scripts and every command they ran
    server_us: float  # the scripts' time (theirs includes their commands')


@dataclass
class TopologyResult:
    """Per-operation Redis costs, memory per user, and 10,000-user bumps by topology."""

    costs: dict[str, Cost] = field(default_factory=dict)
    memory: dict[str, float] = field(default_factory=dict)  # bytes per user, by key kind
    bumps: dict[str, Timing] = field(default_factory=dict)


class FakeWal:
    """A WAL position that moves forward on every read, as the primary's does under writes."""

    def __init__(self) -> None:
        self.position = 1 << 32

    def __call__(self) -> int:
        self.position += 4096
        return self.position


def measure_cost(admin: redis.Redis, operation, per: int) -> Cost:
    """Run `operation` once; Redis' counters over it, divided by `per` (operations it holds)."""
    admin.config_resetstat()
    before = admin.info("stats")
    operation()
    after = admin.info("stats")
    stats = admin.info("commandstats")
    stats.pop("cmdstat_config", None)
    info = stats.get("cmdstat_info")
    if info:  # our own two INFO stats calls are not the operation's (the scripts' INFO are)
        info["usec"] -= 2 * info["usec"] / info["calls"]
        info["calls"] -= 2
    # A script's usec include the commands it ran: server time is the scripts' alone.
    scripts = [stats.get(f"cmdstat_{name}", {}).get("usec", 0) for name in ("eval", "evalsha")]
    return Cost(bytes_in=(after["total_net_input_bytes"] - before["total_net_input_bytes"]) / per,
                bytes_out=(after["total_net_output_bytes"] - before["total_net_output_bytes"]) / per,
                commands=sum(v["calls"] for v in stats.values()) / per,
                server_us=sum(scripts) / per)


def used_memory(admin: redis.Redis) -> int:
    """used_memory now."""
    return admin.info("memory")["used_memory"]


def measure_costs(result: TopologyResult, redis_url: str) -> None:
    """Polls and bumps against the spare db of the private Redis (as scaling uses it), and
    memory per user."""
    client = redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/3")
    admin = redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/3")
    client.flushdb()
    users = [str(uuid.uuid4()) for _ in range(max(FANOUTS))]
    before = used_memory(admin)
    markers.bump(client, users)
    result.memory["marker"] = (used_memory(admin) - before) / len(users)
    polled = users[:USERS]

    def polls(window: int):
        return lambda: [markers.read(client, u, window=window) for _ in range(ROUNDS) for u in polled]

    result.costs["poll, rate limit counted"] = measure_cost(admin, polls(RATE_WINDOW), USERS * ROUNDS)
    result.costs["poll, no rate limit"] = measure_cost(admin, polls(0), USERS * ROUNDS)
    before = used_memory(admin)
    for u in users:
        ratelimit.count_request(client, u, RATE_WINDOW)
    result.memory["rate counter (while active)"] = (used_memory(admin) - before) / len(users)
    result.costs["bump, per user (10,000)"] = measure_cost(
        admin, lambda: markers.bump(client, users), len(users))
    wal = FakeWal()
    before = used_memory(admin)
    markers.bump(client, users, wal=wal)  # records made and confirmed: the markers' values grow
    result.memory["LSN record (with replicas)"] = (used_memory(admin) - before) / len(users)
    result.costs["bump with LSN records, per user (10,000)"] = measure_cost(
        admin, lambda: markers.bump(client, users, wal=wal), len(users))
    client.flushdb()
    client.close()
    admin.close()


def time_bumps(client, users: list[str], reps: int, wal=None) -> Timing:
    """markers.bump of `users`, `reps` times (a first call, which creates everything, first)."""
    markers.bump(client, users, wal=wal)
    samples = []
    for _ in range(reps):
        started = time.perf_counter()
        markers.bump(client, users, wal=wal)
        samples.append((time.perf_counter() - started) * 1000)
    return Timing.of(samples)


def measure_bumps(result: TopologyResult, redis_url: str, reps: int = 40) -> None:
    """A 10,000-user bump on one server and on a 3-primary Redis Cluster (one script per node,
    in parallel), without and with LSN records."""
    from tests.support.clusters import RedisClusterProcesses  # the tests' process harness

    users = [str(uuid.uuid4()) for _ in range(max(FANOUTS))]
    single = markers.connect(parse_redis_url(redis_url), 5, 64)
    result.bumps["one server"] = time_bumps(single, users, reps)
    result.bumps["one server, LSN records"] = time_bumps(single, users, reps, FakeWal())
    single.close()
    cluster = RedisClusterProcesses(OUT / "redis-cluster", primaries=3, replicas=0)
    try:
        client = markers.connect(parse_redis_url(cluster.start().url), 5, 64)
        result.bumps["3-primary Cluster"] = time_bumps(client, users, reps)
        result.bumps["3-primary Cluster, LSN records"] = time_bumps(client, users, reps, FakeWal())
        client.close()
    finally:
        cluster.stop()


def run_topology(redis_url: str) -> TopologyResult:
    """Every topology measurement."""
    result = TopologyResult()
    with tqdm(total=2, desc="topology", unit="part") as bar:
        measure_costs(result, redis_url)
        bar.update(1)
        measure_bumps(result, redis_url)
        bar.update(1)
    return result
