"""The load simulator: many mobile apps polling their unread counts while writers send and read.

Each simulated user polls every `interval` seconds (jittered), keeps the ETag of its last answer
and sends it back in `If-None-Match` (conditional mode) or never (naive mode), and may honour
`X-Poll-Interval`. Writers send messages and mark conversations read at a time-compressed rate of
`messages_per_user_day`. The simulator is the only writer, so it knows every count change and
hence the information minimum: the polls that *had* to reach Postgres because the user's counts
changed since their previous poll.
"""

import asyncio
import json
import os
import random
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field

import redis
import uvloop
from tqdm import tqdm

from bench import pg
from bench.dataset import World
from bench.httpclient import HttpError, Pool, get_request, post_request
from bench.services import JWT_SECRET, CpuMeter
from counts.identity import mint_token

SAMPLE_EVERY = 2.0  # seconds between pg_stat_statements samples for the timeline
PROFILE_SECONDS = 10  # py-spy samples the service during the last seconds of a pass


@dataclass
class SimConfig:
    """What one pass simulates."""

    users: int = 10_000
    interval: float = 3.0
    jitter: float = 0.1
    duration: float = 40.0
    connections: int = 64
    honour_poll_interval: bool = False
    messages_per_user_day: float = 50.0
    time_compression: float = 5.0
    reads_per_message: float = 1.0
    timeout: float = 5.0
    seed: int = 1

    @property
    def offered(self) -> float:
        """Polls per second the users ask for."""
        return self.users / self.interval

    @property
    def message_rate(self) -> float:
        """Messages per second the writers send (time-compressed)."""
        return self.users * self.messages_per_user_day * self.time_compression / 86_400


@dataclass
class PassResult:
    """Everything measured in one pass, over its measurement window."""

    mode: str
    config: SimConfig
    seconds: float = 0.0
    polls: int = 0
    status: Counter = field(default_factory=Counter)
    poll_intervals: Counter = field(default_factory=Counter)  # X-Poll-Interval values received
    errors: Counter = field(default_factory=Counter)
    necessary: int = 0  # the information minimum: polls that followed a count change
    count_changes: int = 0
    latency_ms: array = field(default_factory=lambda: array("d"))  # from the scheduled time
    service_ms: array = field(default_factory=lambda: array("d"))  # from the send
    lag_ms: array = field(default_factory=lambda: array("d"))  # the client's own wake-up lateness
    bytes_sent: int = 0
    bytes_received: int = 0
    pg_calls: dict[str, int] = field(default_factory=dict)
    redis_calls: dict[str, int] = field(default_factory=dict)
    cpu_cores: dict[str, float] = field(default_factory=dict)
    writes: Counter = field(default_factory=Counter)
    write_ms: array = field(default_factory=lambda: array("d"))
    timeline: list[dict] = field(default_factory=list)  # per second: polls, 200s, bytes
    pg_timeline: list[tuple[float, int]] = field(default_factory=list)  # (s, unread calls so far)
    profile: dict | None = None


class PendingReads:
    """(conversation, user) pairs with unread messages, for the readers to pick from at random."""

    def __init__(self, pairs: list[tuple[int, int]]):
        self.items = list(pairs)
        self.index = {pair: i for i, pair in enumerate(self.items)}

    def add(self, pair: tuple[int, int]) -> None:
        """Remember a pair (once)."""
        if pair not in self.index:
            self.index[pair] = len(self.items)
            self.items.append(pair)

    def discard(self, pair: tuple[int, int]) -> None:
        """Forget a pair if present (swap with the last, O(1))."""
        i = self.index.pop(pair, None)
        if i is None:
            return
        last = self.items.pop()
        if i < len(self.items):
            self.items[i] = last
            self.index[last] = i

    def pop_random(self, rng: random.Random) -> tuple[int, int] | None:
        """Remove and return a random pair, or None."""
        if not self.items:
            return None
        pair = self.items[rng.randrange(len(self.items))]
        self.discard(pair)
        return pair


class Simulation:
    """One pass: users polling, writers writing, meters around the measurement window."""

    def __init__(self, world: World, cfg: SimConfig, conditional: bool, port: int,
                 database_url: str, redis_url: str, cpu_groups: dict[str, list[int]],
                 profiler=None):
        self.world, self.cfg, self.conditional = world, cfg, conditional
        self.port, self.database_url, self.redis_url = port, database_url, redis_url
        self.cpu_groups, self.profiler = cpu_groups, profiler
        self.result = PassResult("conditional" if conditional else "naive", cfg)
        n = cfg.users
        self.etags: list[bytes | None] = [None] * n
        self.changed = bytearray(n)
        self.server_interval = [0.0] * n
        self.prefixes = [get_request(f"/v1/users/{world.users[u]}/unread-counts",
                                     {"Authorization": f"Bearer {world.tokens[u]}"}) for u in range(n)]
        self.rng = random.Random(cfg.seed)
        self.write_rng = random.Random(cfg.seed + 1)
        self.pending = PendingReads(world.unread_pairs())
        self.locks: dict[int, asyncio.Lock] = {}
        self.service_auth = {"Authorization": "Bearer " + mint_token(JWT_SECRET, "bench", service=True)}
        self.poll_pool: Pool | None = None
        self.write_pool: Pool | None = None
        self.measuring = self.stopping = False
        self.inflight = self.primed = 0
        self.t0 = 0.0
        self.clock_offset = 0.0  # perf_counter() - loop.time()

    # --- polling ----------------------------------------------------------------------------

    async def user(self, u: int, first: float) -> None:
        """One app: poll, wait the interval (or the server's, if larger and honoured), repeat."""
        loop = asyncio.get_running_loop()
        jitter, interval = self.cfg.jitter, self.cfg.interval
        next_at = loop.time() + first
        while True:
            delay = next_at - loop.time()
            lateness = None
            if delay > 0:
                await asyncio.sleep(delay)
                lateness = loop.time() - next_at  # the event loop's own delay: a busy client
            if self.stopping:
                return
            await self.poll(u, next_at, lateness)
            wait = interval * self.rng.uniform(1 - jitter, 1 + jitter)
            if self.cfg.honour_poll_interval:
                wait = max(wait, self.server_interval[u])
            next_at += wait

    async def poll(self, u: int, scheduled: float, lateness: float | None) -> None:
        """One poll, with the ETag this user holds (conditional) or without (naive)."""
        loop, result = asyncio.get_running_loop(), self.result
        counted = self.measuring
        started = loop.time()
        etag = self.etags[u]
        if counted and (self.changed[u] or etag is None):
            result.necessary += 1
        self.changed[u] = 0
        if self.conditional and etag is not None:
            request = self.prefixes[u] + b"If-None-Match: " + etag + b"\r\n\r\n"
        else:
            request = self.prefixes[u] + b"\r\n"
        self.inflight += 1
        try:
            response, sent_at = await self.poll_pool.request(request)
        except (OSError, HttpError) as error:
            if counted:
                result.polls += 1
                result.errors[str(error)[:40]] += 1
            return
        finally:
            self.inflight -= 1
        done = time.perf_counter()
        if response.status in (200, 304):
            self.etags[u] = response.headers.get(b"etag", etag)
            self.primed += etag is None and self.etags[u] is not None
            if self.cfg.honour_poll_interval:
                self.server_interval[u] = float(response.headers.get(b"x-poll-interval", b"0"))
        if counted:
            result.polls += 1
            result.status[response.status] += 1
            result.poll_intervals[response.headers.get(b"x-poll-interval", b"-").decode()] += 1
            if response.status not in (200, 304):
                result.errors[f"HTTP {response.status}"] += 1
            # The schedule runs on the loop's clock (whole ms in uvloop), the request on
            # perf_counter: from the schedule is never less than from the send.
            service = done - sent_at
            result.latency_ms.append(max(done - (scheduled + self.clock_offset), service) * 1000)
            result.service_ms.append(service * 1000)
            if lateness is not None:
                result.lag_ms.append(lateness * 1000)
            second = int(started - self.t0)
            if second < len(result.timeline):
                bucket = result.timeline[second]
                bucket["polls"] += 1
                bucket["ok200"] += response.status == 200
                bucket["bytes"] += len(request) + response.size

    # --- writers ------------------------------------------------------------------------------

    def change(self, u: int) -> None:
        """Record that user u's counts changed (only polling users count)."""
        if u < self.cfg.users:
            self.changed[u] = 1
            if self.measuring:
                self.result.count_changes += 1

    async def write(self, path: str, body: dict) -> dict | None:
        """POST as a backend service; the JSON answer, or None (counted as a write error)."""
        started = time.perf_counter()
        try:
            response, _ = await self.write_pool.request(
                post_request(path, self.service_auth, json.dumps(body).encode()))
        except (OSError, HttpError):
            self.result.writes["errors"] += 1
            return None
        self.result.write_ms.append((time.perf_counter() - started) * 1000)
        if response.status not in (200, 201):
            self.result.writes["errors"] += 1
            return None
        return json.loads(response.body)

    async def send_message(self) -> None:
        """A random member of a random conversation sends a message."""
        world, rng = self.world, self.write_rng
        c = rng.randrange(len(world.conversations))
        sender = rng.choice(world.members[c])
        async with self.locks.setdefault(c, asyncio.Lock()):
            answer = await self.write(f"/v1/conversations/{world.conversations[c]}/messages",
                                      {"sender_id": world.users[sender], "body": "bench message"})
            if answer is None:
                return
            seq = answer["seq"]
            world.last_seq[c] = seq
            self.result.writes["messages"] += 1
            for m in world.members[c]:
                if m == sender:  # sending reads the conversation for the sender
                    if world.last_read[(c, m)] < seq - 1:
                        self.change(m)
                    world.last_read[(c, m)] = seq
                    self.pending.discard((c, m))
                else:
                    self.change(m)
                    self.pending.add((c, m))

    async def mark_read(self) -> None:
        """A user with unread messages in a conversation reads them all."""
        pair = self.pending.pop_random(self.write_rng)
        if pair is None:
            return
        c, u = pair
        world = self.world
        async with self.locks.setdefault(c, asyncio.Lock()):
            answer = await self.write(f"/v1/conversations/{world.conversations[c]}/read",
                                      {"user_id": world.users[u]})
            if answer is None:
                return
            self.result.writes["reads"] += 1
            if answer["last_read_seq"] != world.last_read[(c, u)]:
                world.last_read[(c, u)] = answer["last_read_seq"]
                self.change(u)

    async def writer(self, rate: float, action) -> None:
        """Start `action` at Poisson arrivals of `rate` per second (open loop) until stopped."""
        tasks: set[asyncio.Task] = set()
        while not self.stopping and rate > 0:
            await asyncio.sleep(self.write_rng.expovariate(rate))
            if self.stopping:
                break
            task = asyncio.ensure_future(action())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=self.cfg.timeout * 2)

    # --- the pass -----------------------------------------------------------------------------

    async def run(self) -> PassResult:
        """Warm up (every user polls once), measure for cfg.duration, then collect the meters."""
        cfg, result = self.cfg, self.result
        self.poll_pool = Pool("127.0.0.1", self.port, cfg.connections, cfg.timeout)
        self.write_pool = Pool("127.0.0.1", self.port, 8, cfg.timeout * 2)
        # Apps come online over two intervals (not all at once), then poll every interval.
        users = [asyncio.ensure_future(self.user(u, self.rng.uniform(0, 2 * cfg.interval)))
                 for u in range(cfg.users)]
        loop = asyncio.get_running_loop()
        self.clock_offset = time.perf_counter() - loop.time()
        await self.warm_up(loop)
        stats = pg.connect(self.database_url)
        client = redis.Redis.from_url(self.redis_url)
        with stats.cursor() as cur:
            pg.reset_statements(cur)
        client.config_resetstat()
        result.timeline = [{"polls": 0, "ok200": 0, "bytes": 0} for _ in range(int(cfg.duration) + 1)]
        meter = CpuMeter({**self.cpu_groups, "load generator": [os.getpid()]}).start()
        sent0, received0 = self.poll_pool.bytes_sent, self.poll_pool.bytes_received
        self.t0 = loop.time()
        self.measuring = True
        writers = [asyncio.ensure_future(self.writer(cfg.message_rate, self.send_message)),
                   asyncio.ensure_future(self.writer(cfg.message_rate * cfg.reads_per_message,
                                                     self.mark_read))]
        profiling = await self.watch(stats, loop)
        self.measuring = False
        result.seconds = loop.time() - self.t0
        meter.stop()
        result.bytes_sent = self.poll_pool.bytes_sent - sent0
        result.bytes_received = self.poll_pool.bytes_received - received0
        self.stopping = True
        await asyncio.wait(writers)
        deadline = loop.time() + cfg.timeout + 1
        while self.inflight and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for task in users:
            task.cancel()
        await asyncio.gather(*users, return_exceptions=True)
        with stats.cursor() as cur:
            result.pg_calls = pg.calls_by_kind(cur)
        result.redis_calls = {name.removeprefix("cmdstat_"): info["calls"]
                              for name, info in client.info("commandstats").items()
                              if name not in ("cmdstat_info", "cmdstat_config")}
        result.cpu_cores = {name: meter.cores(name) for name in meter.groups}
        result.cpu_cores["machine (all processes)"] = meter.machine_busy
        if profiling is not None:
            result.profile = profiling.finish()
        stats.close()
        client.close()
        self.poll_pool.close()
        self.write_pool.close()
        return result

    async def warm_up(self, loop) -> None:
        """Wait until every user holds an ETag (its first poll, a 200), as a running app would."""
        cfg = self.cfg
        deadline = loop.time() + cfg.interval * 4 + 20
        with tqdm(total=cfg.users, desc=f"{self.result.mode:>11} warm-up", unit="user") as bar:
            while self.primed < cfg.users and loop.time() < deadline:
                await asyncio.sleep(0.25)
                bar.update(self.primed - bar.n)
        await asyncio.sleep(cfg.interval)  # let the first polls' queries drain: a steady state

    async def watch(self, stats, loop):
        """Show progress each second, sample pg_stat_statements every SAMPLE_EVERY seconds, and
        profile the last PROFILE_SECONDS; the profiler's handle (or None)."""
        cfg, result = self.cfg, self.result
        label = f"{result.mode:>11} {cfg.users} users"
        next_sample = 0.0
        profiling = None
        profile_from = max(0, int(cfg.duration) - PROFILE_SECONDS)
        with tqdm(total=int(cfg.duration), desc=label, unit="s", leave=True) as bar:
            for second in range(int(cfg.duration)):
                if second == profile_from and self.profiler is not None:
                    profiling = self.profiler(int(cfg.duration) - profile_from)
                await asyncio.sleep(max(0.0, self.t0 + second + 1 - loop.time()))
                bucket = result.timeline[second]
                bar.set_postfix(polls=bucket["polls"], ok200=bucket["ok200"],
                                errors=sum(result.errors.values()))
                bar.update(1)
                elapsed = loop.time() - self.t0
                if elapsed >= next_sample:
                    next_sample += SAMPLE_EVERY
                    calls = await loop.run_in_executor(None, self.sample, stats)
                    result.pg_timeline.append((elapsed, calls))
        return profiling

    @staticmethod
    def sample(stats) -> int:
        """Unread-count statements so far (runs on an executor thread)."""
        with stats.cursor() as cur:
            return pg.calls_by_kind(cur)["unread"]


def simulate(world: World, cfg: SimConfig, conditional: bool, port: int, database_url: str,
             redis_url: str, cpu_groups: dict[str, list[int]], profiler=None) -> PassResult:
    """Run one pass on a fresh event loop (uvloop) and return what it measured."""
    sim = Simulation(world, cfg, conditional, port, database_url, redis_url, cpu_groups, profiler)
    started = time.monotonic()
    result = uvloop.run(sim.run())
    result.writes["wall_seconds"] = round(time.monotonic() - started)
    return result
