"""Hot-path benchmark: the 304 and 200 paths against the floor (bare WSGI + one Redis GET).

The method: one gunicorn worker pinned to core 0, wrk pinned to core 1, the same worker
class for the service and the floor, rounds interleaved so drift hits every contender alike. The
304 path runs twice: with HS256 tokens (COUNTS_JWT_SECRET), and with ES256 tokens checked against
a JWKS the bench serves (COUNTS_JWKS_URL). Both carry the same claims (the ES256 ones add aud, iss
and a kid), because a token's size costs the 304 path too (HTTP parsing): the comparison is of the
algorithms, which the verified-token cache should make irrelevant to a repeated token.
"""

import json
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
from tqdm import tqdm

from bench.dataset import World
from bench.profile import PySpy
from bench.services import NO_LIMIT, OUT, ROOT, CpuMeter, gunicorn, service_env
from counts.markers import keys
from tests.support.identity import ISSUER, JwksServer, SigningKey
from tests.support.markers import read_marker
from tests.support.services import Gunicorn

LUA = ROOT / "bench" / "poll.lua"
ES256 = "counts-es256"  # the service verifying ES256 tokens with keys from a JWKS
CONTENDERS = (("floor", "304"), ("counts", "304"), ("counts", "200"), (ES256, "304"))
# Without the shipped class among those measured, the fastest on a poll mix is chosen, not on 304s
# alone: a class that wins the 304 path by a few percent and loses the 200 path by half is wrong.
MIX_200 = 0.05
CONFIGURED_CLASS = "gevent"  # gunicorn.conf.py's
WRK_USERS = 5000  # users wrk cycles through, each with its own token and ETag
WARM_RUNS = 5  # at most, per server, to have every token verified once


@dataclass
class Run:
    """One wrk run against one server."""

    rps: float
    p50_ms: float
    p99_ms: float
    statuses: dict[str, int]
    errors: int
    app_us: float  # gunicorn CPU per request
    total_us: float  # gunicorn + Redis + Postgres CPU per request


@dataclass
class HotpathResult:
    """Every run, by (worker class, app, path), and the profile of the chosen class's 304 path."""

    duration: float
    connections: int
    runs: dict[tuple[str, str, str], list[Run]] = field(default_factory=dict)
    profile: dict | None = None
    chosen: str = ""

    def median(self, key: tuple[str, str, str], attr: str = "rps") -> float:
        """The median of one measure over the rounds."""
        return statistics.median(getattr(run, attr) for run in self.runs[key])

    def mixed(self, worker_class: str) -> float:
        """Requests/s of a poll mix of MIX_200 200s and the rest 304s (harmonic: CPU adds up)."""
        return 1 / ((1 - MIX_200) / self.median((worker_class, "counts", "304"))
                    + MIX_200 / self.median((worker_class, "counts", "200")))

    def ratio(self, worker_class: str, path: str = "304", app: str = "counts") -> float:
        """The service's requests/s on `path` over the floor's, same worker class, same run."""
        return self.median((worker_class, app, path)) / self.median((worker_class, "floor", "304"))


def choose(result: HotpathResult, worker_classes: tuple[str, ...]) -> str:
    """The class the service ships when it was measured (live connections need gevent: gthread
    pins a thread to each), else the fastest on the poll mix."""
    if CONFIGURED_CLASS in worker_classes:
        return CONFIGURED_CLASS
    return max(worker_classes, key=result.mixed)


def write_users(world: World, redis_url: str, path: Path, tokens: list[str],
                count: int = WRK_USERS) -> str:
    """A wrk users file (id, token, current marker) for the first `count` users; the floor's key."""
    client = redis.Redis.from_url(redis_url)
    lines = []
    for u in range(min(count, len(world.users))):
        marker = read_marker(client, world.users[u])
        lines.append(f"{world.users[u]} {tokens[u]} {marker}")
    client.close()
    path.write_text("\n".join(lines) + "\n")
    return keys.marker_key(world.users[0])


def wrk(url: str, users: Path, mode: str, seconds: float, connections: int) -> dict:
    """Run wrk (pinned to core 1) and return its RESULT line."""
    cmd = ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s",
           "-s", str(LUA), url + "/", "--", str(users), mode]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=seconds + 30)
    line = next((line for line in done.stdout.splitlines() if line.startswith("RESULT ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout[-500:]}{done.stderr[-500:]}")
    return json.loads(line.removeprefix("RESULT "))


def measure(server: Gunicorn, mode: str, users: Path, seconds: float, connections: int,
            backend_pids: dict[str, list[int]]) -> Run:
    """One wrk run with the CPU of the app, Redis and Postgres metered around it."""
    meter = CpuMeter({"app": server.pids(), **backend_pids}).start()
    out = wrk(server.url, users, mode, seconds, connections)
    meter.stop()
    requests = max(1, out["requests"])
    app = meter.seconds["app"]
    total = app + sum(meter.seconds[name] for name in backend_pids)
    return Run(rps=out["requests"] / (out["duration_us"] / 1e6), p50_ms=out["p50_us"] / 1000,
               p99_ms=out["p99_us"] / 1000,
               statuses={"200": out["s200"], "304": out["s304"], "other": out["sother"]},
               errors=out["errors"], app_us=1e6 * app / requests, total_us=1e6 * total / requests)


def run_hotpath(world: World, database_url: str, redis_url: str, backend_pids: dict[str, list[int]],
                worker_classes: tuple[str, ...], rounds: int, seconds: float,
                connections: int = 32) -> HotpathResult:
    """Start one pinned single-worker server per (class, app), then interleave wrk rounds."""
    OUT.mkdir(parents=True, exist_ok=True)
    key = SigningKey("EC")
    jwks = JwksServer(key).start()
    users = {"counts": OUT / "wrk-users.txt", ES256: OUT / "wrk-users-es256.txt"}
    floor_key = write_users(world, redis_url, users["counts"], world.tokens)
    now = int(time.time())
    es256_tokens = [key.sign({"sub": uid, "role": "authenticated", "aud": "authenticated",
                              "iss": ISSUER, "iat": now, "exp": now + 6 * 3600})
                    for uid in world.users[:WRK_USERS]]
    write_users(world, redis_url, users[ES256], es256_tokens)
    users["floor"] = users["counts"]
    # The rate limiter stays on (its counter rides in the 304 path's Redis script) but can never
    # refuse: wrk sends each user many more polls a minute than an app would.
    env = service_env(database_url, redis_url, outbox_drain_interval=0, poll_interval=3,
                      rate_limit=NO_LIMIT)
    env["FLOOR_KEY"] = floor_key
    envs = {"floor": env, "counts": env,
            ES256: {**env, "COUNTS_JWKS_URL": jwks.url, "COUNTS_JWT_ISSUER": ISSUER}}
    result = HotpathResult(seconds, connections)
    servers: dict[tuple[str, str], Gunicorn] = {}
    try:
        for worker_class in worker_classes:
            for app, module in (("floor", "bench.floor_app:app"), ("counts", "wsgi:app"),
                                (ES256, "wsgi:app")):
                threads = 1 if worker_class == "sync" else 8  # sync with threads > 1 becomes gthread
                servers[worker_class, app] = gunicorn(envs[app], module, workers=1, threads=threads,
                                                      worker_class=worker_class, cpus="0").start()
        for (_, app), server in servers.items():  # warm: keys fetched, pools open, and every
            # user's token verified once, so each contender measures a poller's steady state (a
            # cached token) rather than first polls: one second of 200s did not reach every token,
            # and an ES256 verification costs ~15 times an HS256 one.
            wrk(server.url, users[app], "304" if app == "floor" else "200", 1, connections)
            for _ in range(WARM_RUNS):
                if wrk(server.url, users[app], "304", 2, connections)["requests"] >= WRK_USERS:
                    break  # poll.lua walks the users in order: one run this long saw them all
        total = rounds * len(worker_classes) * len(CONTENDERS)
        with tqdm(total=total, desc="hot path", unit="run") as bar:
            for _ in range(rounds):
                for worker_class in worker_classes:
                    for app, mode in CONTENDERS:
                        run = measure(servers[worker_class, app], mode, users[app], seconds,
                                      connections, backend_pids)
                        result.runs.setdefault((worker_class, app, mode), []).append(run)
                        bar.set_postfix(last=f"{worker_class} {app} {mode}: {run.rps:,.0f}/s")
                        bar.update(1)
        result.chosen = choose(result, worker_classes)
        server = servers[result.chosen, "counts"]
        spy = PySpy(server.process.pid, seconds, OUT / "profile-hotpath-304.txt")
        wrk(server.url, users["counts"], "304", seconds, connections)
        result.profile = spy.finish()
    finally:
        for server in servers.values():
            server.stop()
        jwks.stop()
    return result
