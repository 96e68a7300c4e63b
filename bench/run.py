"""`make bench` / `python -m bench.run`: every benchmark of issue #3 in one run, then the report.

Starts a private Postgres (pg_stat_statements preloaded) and Redis, seeds them, runs the hot-path
benchmark, the load simulator (conditional, then naive: the same traffic), a search for the
highest rate meeting p99 if the full load misses it, the scaling benchmark, the per-user Redis
costs by topology (a Redis Cluster started for it), the push benchmark (issue 12) and the
TypeScript client's (issue 18); writes
bench/RESULTS.md and bench/results.png; stops everything it started.
"""

import argparse
import copy
import dataclasses
import functools
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import psutil
import redis

from bench import chart, dataset, live_memory, pg, report
from bench.expo_push import run_expo
from bench.hotpath import run_hotpath
from bench.js_client import run_client_bench
from bench.live import LiveConfig, LiveResult, run_live
from bench.live_report import RSS_GOAL_KIB
from bench.mentions import run_mentions
from bench.profile import PySpy
from bench.push import run_push
from bench.scaling import run_scaling
from bench.services import NO_LIMIT, OUT, ROOT, Backends, backends, gunicorn, migrate, service_env
from bench.simulate import PassResult, SimConfig, simulate
from bench.topology import run_topology

SIM_DB = "bench_sim"
MEMORY_DB = "bench_live_memory"
SEARCH_FACTORS = (0.75, 0.5, 0.3, 0.2)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line; defaults are the short `make bench` run at the seed's full load."""
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sim = parser.add_argument_group("load simulator")
    sim.add_argument("--users", type=int, default=10_000, help="simulated apps")
    sim.add_argument("--interval", type=float, default=3.0, help="seconds between a user's polls")
    sim.add_argument("--duration", type=float, default=40, help="measured seconds per pass")
    sim.add_argument("--connections", type=int, default=64, help="keep-alive connections for polls")
    sim.add_argument("--messages-per-user-day", type=float, default=50.0)
    sim.add_argument("--time-compression", type=float, default=5.0,
                     help="writes run this many times faster than real time")
    sim.add_argument("--honour-poll-interval", action="store_true",
                     help="clients wait max(interval, X-Poll-Interval)")
    sim.add_argument("--server-poll-interval", type=int, default=None,
                     help="the service's X-Poll-Interval (default: --interval)")
    sim.add_argument("--workers", type=int, default=2, help="gunicorn workers for the simulator")
    sim.add_argument("--threads", type=int, default=8, help="threads per gthread worker")
    sim.add_argument("--worker-class", default="auto",
                     help="gunicorn worker class for the simulator; auto: the hot path's choice")
    sim.add_argument("--drain-interval", type=float, default=5.0, help="COUNTS_OUTBOX_DRAIN_INTERVAL")
    sim.add_argument("--search-seconds", type=float, default=15,
                     help="measured seconds per lower-rate pass when the full load misses p99")
    hot = parser.add_argument_group("hot path")
    hot.add_argument("--hotpath-classes", default="gevent,gthread", help="worker classes to compare")
    hot.add_argument("--hotpath-rounds", type=int, default=2)
    hot.add_argument("--hotpath-seconds", type=float, default=4)
    scale = parser.add_argument_group("scaling")
    scale.add_argument("--sizes", default="1000000,10000000", help="total messages, comma-separated")
    push = parser.add_argument_group("push")
    push.add_argument("--push-users", type=int, default=None, help="users with a device (default --users)")
    push.add_argument("--push-jobs", type=int, default=5000, help="pushes queued for the throughput run")
    push.add_argument("--expo-seconds", type=float, default=10,
                      help="seconds of Expo's 600 pushes a second offered to one dispatcher")
    push.add_argument("--push-duration", type=float, default=40,
                      help="seconds of writes for the latency run (rate: --messages-per-user-day "
                           "x --time-compression)")
    out = parser.add_argument_group("report")
    out.add_argument("--price-per-million-reads", type=float, default=0.20,
                     help="USD; an assumption (managed-database I/O pricing), not the seed's figure")
    out.add_argument("--results", type=Path, default=ROOT / "bench" / "RESULTS.md")
    out.add_argument("--chart", type=Path, default=ROOT / "bench" / "results.png")
    live = parser.add_argument_group("live connections")
    live.add_argument("--live-connections", type=int, default=10_000,
                      help="users on live connections (at most --users)")
    live.add_argument("--live-seconds", type=float, default=40, help="measured seconds")
    live.add_argument("--live-mix", default="sse:0.4,ws:0.4,long-poll:0.2",
                      help="share of each transport")
    client = parser.add_argument_group("TypeScript client (clients/js)")
    client.add_argument("--client-count", type=int, default=1000, help="clients in one Node process")
    client.add_argument("--client-seconds", type=float, default=60,
                        help="measured foreground seconds (background: a third of it)")
    client.add_argument("--client-writes-per-second", type=float, default=20)
    parser.add_argument("--skip", default="",
                        help="comma-separated: hotpath, simulate, scaling, live, client, topology, "
                             "push, expo, mentions")
    return parser.parse_args(argv)


def machine_facts(b: Backends) -> dict[str, str]:
    """CPU, memory, versions and load of the machine the run is on."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    conn = pg.connect(b.pg_admin_url)
    with conn.cursor() as cur:
        cur.execute("SHOW server_version")
        pg_version = cur.fetchone()[0]
    conn.close()
    redis_version = redis.Redis.from_url(b.redis_url).info("server")["redis_version"]
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True,
                            text=True, check=False).stdout.strip() or "unknown"
    return {"CPU": f"{cpu}, {psutil.cpu_count()} cores",
            "memory": f"{psutil.virtual_memory().total / 2**30:.0f} GiB",
            "kernel": platform.release(), "Python": platform.python_version(),
            "Postgres": f"{pg_version} (private cluster, pg_stat_statements; fsync off)",
            "Redis": f"{redis_version} (private server, no persistence)", "code": commit,
            "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg())}


def run_simulator(args: argparse.Namespace, b: Backends, world: dataset.World,
                  worker_class: str) -> tuple[list[PassResult], list[PassResult]]:
    """Conditional then naive on the same starting state; lower rates if the full load misses."""
    url = pg.database_url(b.pg_admin_url, SIM_DB)
    env = service_env(url, b.redis_url, outbox_drain_interval=args.drain_interval,
                      poll_interval=args.server_poll_interval or round(args.interval))
    cfg = SimConfig(users=args.users, interval=args.interval, duration=args.duration,
                    connections=args.connections, honour_poll_interval=args.honour_poll_interval,
                    messages_per_user_day=args.messages_per_user_day,
                    time_compression=args.time_compression)
    passes, search = [], []
    for conditional in (True, False):
        state = copy.deepcopy(world)  # the same starting state (and writes) for both passes
        dataset.load_world(url, state)
        redis.Redis.from_url(b.redis_url).flushdb()  # our private server
        with gunicorn(env, workers=args.workers, threads=args.threads,
                      worker_class=worker_class) as server:
            groups = {"service": server.pids(), "redis": [b.redis_pid], "postgres": [b.pg_pid]}
            mode = "conditional" if conditional else "naive"
            profiler = functools.partial(PySpy, server.process.pid, output=OUT / f"profile-{mode}.txt")
            passes.append(simulate(state, cfg, conditional, server.port, url, b.redis_url, groups,
                                   profiler))
            if conditional and not report.meets_load(passes[-1]):
                for factor in SEARCH_FACTORS:
                    lower = dataclasses.replace(cfg, users=round(cfg.users * factor),
                                                duration=args.search_seconds)
                    search.append(simulate(state, lower, True, server.port, url, b.redis_url, groups))
                    if report.meets_load(search[-1]):
                        break
    return passes, search


def run_live_bench(args: argparse.Namespace, b: Backends, world: dataset.World) -> LiveResult:
    """The seed's users on live connections, on the gevent worker (WebSocket needs it)."""
    url = pg.database_url(b.pg_admin_url, SIM_DB)
    state = copy.deepcopy(world)
    dataset.load_world(url, state)
    redis.Redis.from_url(b.redis_url).flushdb()  # our private server
    cfg = LiveConfig(connections=min(args.live_connections, args.users),
                     mix={kind: float(share) for kind, share in
                          (item.split(":") for item in args.live_mix.split(","))},
                     seconds=args.live_seconds, messages_per_user_day=args.messages_per_user_day,
                     time_compression=args.time_compression)
    env = service_env(url, b.redis_url, outbox_drain_interval=args.drain_interval, rate_limit=NO_LIMIT,
                      poll_interval=3, max_streams=cfg.connections)
    # The operators' address: the battery figure is read from the service's own counters.
    with gunicorn(env, workers=args.workers, worker_class="gevent", admin=True) as server:
        groups = {"service": server.pids(), "redis": [b.redis_pid], "postgres": [b.pg_pid]}
        profiler = functools.partial(PySpy, server.process.pid, output=OUT / "profile-live.txt")
        return run_live(state, cfg, server.port, url, list(server.worker_pids()), groups, profiler,
                        server.admin_url)


MEMORY_CONNECTIONS = 1_000  # per transport, for the breakdown that explains an RSS miss


def live_memory_breakdowns(b: Backends) -> list[dict]:
    """Where an idle connection's bytes go, each transport alone on one worker with tracemalloc
    on (bench.live_memory): the profile that explains a miss of the RSS goal."""
    url = pg.database_url(b.pg_admin_url, MEMORY_DB)
    found = []
    for kind in ("sse", "ws", "long-poll"):
        pg.recreate_database(b.pg_admin_url, MEMORY_DB)
        migrate(url, b.redis_url)
        found.append(live_memory.breakdown(kind, MEMORY_CONNECTIONS, url, b.redis_url))
    return found


def bench_command(argv: list[str] | None) -> str:
    """The command that made this run, as the report quotes it."""
    given = sys.argv[1:] if argv is None else argv
    if os.environ.get("MAKE_BENCH"):  # set by the Makefile's bench target
        return "make bench" + (f" BENCH_ARGS={shlex.quote(shlex.join(given))}" if given else "")
    return shlex.join([".venv/bin/python", "-m", "bench.run", *given])


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks and write the report."""
    args = parse_args(argv)
    started = time.monotonic()
    skip = {name.strip() for name in args.skip.split(",") if name.strip()}
    with backends() as b:
        run = report.Run(bench_command(argv), machine_facts(b), args.price_per_million_reads)
        pg.recreate_database(b.pg_admin_url, SIM_DB)
        migrate(pg.database_url(b.pg_admin_url, SIM_DB), b.redis_url)
        world = dataset.build_world(args.users)
        dataset.mint_tokens(world)
        dataset.load_world(pg.database_url(b.pg_admin_url, SIM_DB), world)
        worker_class = args.worker_class
        if "hotpath" not in skip:
            run.hotpath = run_hotpath(world, pg.database_url(b.pg_admin_url, SIM_DB), b.redis_url,
                                      {"redis": [b.redis_pid], "postgres": [b.pg_pid]},
                                      tuple(args.hotpath_classes.split(",")), args.hotpath_rounds,
                                      args.hotpath_seconds)
            if worker_class == "auto":
                worker_class = run.hotpath.chosen
        if worker_class == "auto":
            worker_class = "gevent"
        if "simulate" not in skip:
            run.passes, run.search = run_simulator(args, b, world, worker_class)
        if "live" not in skip:
            run.live = run_live_bench(args, b, world)
            if run.live.rss_kib_per_connection.get("all", 0) > RSS_GOAL_KIB:
                run.live.memory = live_memory_breakdowns(b)
        if "client" not in skip:
            run.client = run_client_bench(b.pg_admin_url, b.redis_url, args.client_count, args.client_seconds,
                                          args.client_writes_per_second, workers=args.workers)
        if "scaling" not in skip:
            sizes = tuple(int(size) for size in args.sizes.split(","))
            run.scaling = run_scaling(b.pg_admin_url, b.redis_url, sizes)
        if "push" not in skip:
            run.push = run_push(b.pg_admin_url, b.redis_url, args.push_users or args.users,
                                args.push_duration, args.messages_per_user_day, args.time_compression,
                                args.push_jobs, workers=args.workers, threads=args.threads)
        if "expo" not in skip:
            run.expo = run_expo(b.pg_admin_url, b.redis_url, args.expo_seconds)
        if "topology" not in skip:
            run.topology = run_topology(b.redis_url)
        if "mentions" not in skip:
            run.mentions = run_mentions(b.pg_admin_url)
        run.machine["load average at end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    run.wall_seconds = time.monotonic() - started
    report.write_results(run, args.results, args.chart)
    chart.write_chart(run, args.chart)
    print(f"wrote {args.results} and {args.chart} in {run.wall_seconds / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
