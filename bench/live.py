"""The live benchmark: the seed's users on live connections (SSE, WebSocket, long-poll) instead of
3-s polling, on the real service, with writers at the seed's rate x time compression.

Measures: RSS growth per idle connection (workers' RSS before and after each transport's
connections open), event latency from a write's 201 to each recipient's client, missed final
states (every client's last counts against the service's own query once writes stop), HTTP
requests per user per minute, Postgres unread-count queries against the information minimum
(the count changes the writers caused), and CPU.
"""

import asyncio
import gc
import json
import os
import random
import resource
import time
from array import array
from dataclasses import dataclass, field

import psutil
import uvloop
from tqdm import tqdm

from bench import battery, pg
from bench.dataset import World
from bench.httpclient import HttpError, Pool, post_request
from bench.live_clients import Client, run_client
from bench.services import JWT_SECRET, CpuMeter
from bench.simulate import PendingReads
from counts.identity import mint_token
from counts.postgres.queries import reads

SETTLE_SECONDS = 3.0  # after the writes stop, for the last events to arrive
OPEN_PER_SECOND = 1000  # connections opened per second (the listen backlog is 2,048)


@dataclass
class LiveConfig:
    """What one live run does."""

    connections: int = 10_000
    mix: dict[str, float] = field(default_factory=lambda: {"sse": 0.4, "ws": 0.4, "long-poll": 0.2})
    seconds: float = 40.0
    messages_per_user_day: float = 50.0
    time_compression: float = 5.0
    seed: int = 2

    def message_rate(self, users: int) -> float:
        """Messages per second the writers send (as many mark-reads go with them)."""
        return users * self.messages_per_user_day * self.time_compression / 86_400


@dataclass
class LiveResult:
    """What the live run measured."""

    config: LiveConfig
    opened: dict[str, int] = field(default_factory=dict)
    rss_kib_per_connection: dict[str, float] = field(default_factory=dict)
    latency_ms: array = field(default_factory=lambda: array("d"))
    undelivered: int = 0  # recipients whose client got no counts after the write, in the window
    missed_final: int = 0
    final_errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    requests: int = 0  # HTTP requests of the live clients in the window
    writes: int = 0
    count_changes: int = 0  # the information minimum
    pg_unread: int = 0
    events: int = 0
    cpu_cores: dict[str, float] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    profile: dict | None = None
    service: dict[str, float] = field(default_factory=dict)  # the service's counters' growth
    memory: list[dict] = field(default_factory=list)  # bench.live_memory breakdowns, on a miss


def worker_rss(pids: list[int]) -> int:
    """The workers' resident memory now, in bytes."""
    return sum(psutil.Process(pid).memory_info().rss for pid in pids)


class LiveRun:
    """One run against a started server: open, measure idle memory, write, judge."""

    def __init__(self, world: World, cfg: LiveConfig, port: int, database_url: str,
                 worker_pids: list[int], cpu_groups: dict[str, list[int]], profiler=None,
                 metrics_url: str | None = None):
        self.world, self.cfg, self.port, self.metrics_url = world, cfg, port, metrics_url
        self.database_url, self.worker_pids = database_url, worker_pids
        self.cpu_groups, self.profiler = cpu_groups, profiler
        self.result = LiveResult(cfg)
        rng = random.Random(cfg.seed)
        n = min(cfg.connections, len(world.users))
        kinds = [kind for kind, share in cfg.mix.items() for _ in range(round(share * n))][:n]
        kinds += ["sse"] * (n - len(kinds))
        self.clients = [Client(world.users[u], world.tokens[u], kind) for u, kind in
                        zip(rng.sample(range(len(world.users)), n), kinds, strict=True)]
        self.by_user = {c.user: c for c in self.clients}
        self.rng = rng
        self.service_auth = {"Authorization": "Bearer " + mint_token(JWT_SECRET, "bench", service=True)}
        self.sent: list[tuple[float, float, list[str]]] = []  # (sent, 201, recipients) per message
        self.pending = PendingReads(world.unread_pairs())  # (conversation, member) with unread

    async def run(self) -> LiveResult:
        """Open every transport in turn (measuring RSS), write for cfg.seconds, then judge."""
        stop, result = asyncio.Event(), self.result
        tasks = []

        async def open_idle(clients: list[Client], label: str) -> int:
            """Open these clients' connections; the workers' RSS once they idle."""
            for i in tqdm(range(len(clients)), desc=label, unit="conn", leave=False):
                tasks.append(asyncio.ensure_future(run_client(clients[i], self.port, stop)))
                if i % 100 == 99:
                    await asyncio.sleep(100 / OPEN_PER_SECOND)
            await self._wait_for_first_counts(clients)
            await asyncio.sleep(2)  # idle: what the connections cost at rest
            return worker_rss(self.worker_pids)

        for kind in self.cfg.mix:
            # The marginal cost: RSS across the second half of a transport's connections, so
            # that what the first ones pay once (pools, caches, code paths) is not counted.
            group = [c for c in self.clients if c.kind == kind]
            half = len(group) // 2
            middle = await open_idle(group[:half], f"open {kind} (1/2)")
            end = await open_idle(group[half:], f"open {kind} (2/2)")
            result.opened[kind] = sum(c.total is not None for c in group)
            result.rss_kib_per_connection[kind] = (end - middle) / 1024 / max(1, len(group) - half)
        result.rss_kib_per_connection["all"] = sum(
            result.rss_kib_per_connection[k] * result.opened[k] for k in result.opened) / max(
            1, sum(result.opened.values()))
        # The load generator's own full collections walked its 10,000 clients and the world
        # (0.2-1.9 s each, measured with gc callbacks): arrivals were stamped late by that much.
        gc.collect()
        gc.freeze()
        try:
            await self._measure()
        finally:
            gc.unfreeze()
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return result

    async def _wait_for_first_counts(self, group: list[Client], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(c.total is None and not c.error for c in group):
            await asyncio.sleep(0.2)

    async def _measure(self) -> None:
        """The measurement window: writers on, meters around them; then the final check."""
        cfg, result = self.cfg, self.result
        stats = pg.connect(self.database_url)
        with stats.cursor() as cur:
            pg.reset_statements(cur)
        requests0 = sum(c.requests for c in self.clients)
        events0 = sum(len(c.arrivals) for c in self.clients)
        counted = battery.counters(self.metrics_url) if self.metrics_url else {}
        meter = CpuMeter({**self.cpu_groups, "load generator": [os.getpid()]}).start()
        pool = Pool("127.0.0.1", self.port, 16, timeout=10)
        rate = cfg.message_rate(len(self.world.users))
        started = time.monotonic()
        profiling = self.profiler(min(10, cfg.seconds)) if self.profiler else None
        writers = [asyncio.ensure_future(self._writer(pool, rate, self._send)),
                   asyncio.ensure_future(self._writer(pool, rate, self._read))]
        with tqdm(total=int(cfg.seconds), desc="live window", unit="s", leave=False) as bar:
            while time.monotonic() - started < cfg.seconds:
                await asyncio.sleep(1)
                bar.update(1)
        for writer in writers:
            writer.cancel()
        await asyncio.gather(*writers, return_exceptions=True)
        result.seconds = time.monotonic() - started
        meter.stop()
        if self.metrics_url:
            result.service = battery.growth(counted, battery.counters(self.metrics_url))
        await asyncio.sleep(SETTLE_SECONDS)
        with stats.cursor() as cur:
            result.pg_unread = pg.calls_by_kind(cur)["unread"]
        result.requests = sum(c.requests for c in self.clients) - requests0
        result.events = sum(len(c.arrivals) for c in self.clients) - events0
        result.cpu_cores = {name: meter.cores(name) for name in meter.groups}
        result.cpu_cores["machine (all processes)"] = meter.machine_busy
        if profiling is not None:
            result.profile = profiling.finish()
        self._latencies()
        self._final_states(stats)
        errors: dict[str, int] = {}
        for client in self.clients:
            if client.error:
                errors[client.error] = errors.get(client.error, 0) + 1
        result.errors = errors
        stats.close()
        pool.close()

    async def _writer(self, pool: Pool, rate: float, action) -> None:
        """`action` at Poisson arrivals of `rate` per second, each in its own task."""
        tasks: set = set()
        try:
            while True:
                await asyncio.sleep(self.rng.expovariate(rate))
                task = asyncio.ensure_future(action(pool))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        finally:
            if tasks:
                await asyncio.wait(tasks, timeout=10)

    async def _post(self, pool: Pool, path: str, body: dict) -> dict | None:
        try:
            response, _ = await pool.request(post_request(path, self.service_auth,
                                                          json.dumps(body).encode()))
        except (OSError, HttpError):
            return None
        return json.loads(response.body) if response.status in (200, 201) else None

    async def _send(self, pool: Pool) -> None:
        """A random member of a random conversation sends a message; its recipients changed."""
        world = self.world
        c = self.rng.randrange(len(world.conversations))
        sender = self.rng.choice(world.members[c])
        sent = time.perf_counter()
        answer = await self._post(pool, f"/v1/conversations/{world.conversations[c]}/messages",
                                  {"sender_id": world.users[sender], "body": "live bench"})
        if answer is None:
            return
        acked = time.perf_counter()
        self.result.writes += 1
        recipients = [world.users[m] for m in world.members[c] if m != sender]
        if world.last_read.get((c, sender), answer["seq"]) < answer["seq"] - 1:
            self.result.count_changes += 1  # sending read the conversation for the sender
        world.last_read[(c, sender)] = answer["seq"]
        world.last_seq[c] = answer["seq"]
        self.result.count_changes += len(recipients)
        self.pending.discard((c, sender))
        for m in world.members[c]:
            if m != sender:
                self.pending.add((c, m))
        self.sent.append((sent, acked, recipients))

    async def _read(self, pool: Pool) -> None:
        """A member with unread messages reads a conversation."""
        pair = self.pending.pop_random(self.rng)
        if pair is None:
            return
        c, u = pair
        answer = await self._post(pool, f"/v1/conversations/{self.world.conversations[c]}/read",
                                  {"user_id": self.world.users[u]})
        if answer is None:
            return
        self.result.writes += 1
        if answer["last_read_seq"] != self.world.last_read.get((c, u)):
            self.result.count_changes += 1
        self.world.last_read[(c, u)] = answer["last_read_seq"]

    def _latencies(self) -> None:
        """For each message and recipient: its client's first counts after the write was sent,
        measured from the 201 (0 when they arrived before the writer had its 201)."""
        for sent, acked, recipients in self.sent:
            for user in recipients:
                client = self.by_user.get(user)
                if client is None:
                    continue
                after = next((t for t in client.arrivals if t >= sent), None)
                if after is None:
                    self.result.undelivered += 1
                else:
                    self.result.latency_ms.append(max(0.0, after - acked) * 1000)

    def _final_states(self, stats) -> None:
        """Every client's last counts against the service's own query, after the writes."""
        users = [c.user for c in self.clients]
        with stats.cursor() as cur:
            for i in range(0, len(users), 1000):
                truth = reads.unread_counts(cur, users[i:i + 1000])
                for user, counts in truth.items():
                    client = self.by_user[str(user)]
                    if client.total != counts["total"]:
                        self.result.missed_final += 1
                        if len(self.result.final_errors) < 10:
                            self.result.final_errors.append(
                                f"{client.kind} of {user}: {client.total} vs {counts['total']}")


def run_live(world: World, cfg: LiveConfig, port: int, database_url: str, worker_pids: list[int],
             cpu_groups: dict[str, list[int]], profiler=None,
             metrics_url: str | None = None) -> LiveResult:
    """One live run on a fresh uvloop event loop."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = cfg.connections + 1000  # a socket per connection, and then some
    if soft < wanted:
        limit = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    return uvloop.run(LiveRun(world, cfg, port, database_url, worker_pids, cpu_groups,
                              profiler, metrics_url).run())
