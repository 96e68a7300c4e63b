"""The client section (issue 18): `--client-count` TypeScript clients (@counts/client, in one Node
process: clients/js/bench/clients.mjs) against the service under gunicorn's gevent worker.

Foreground, with writes to random users: latency from each write's 201 to the recipient's
client snapshot, and requests per client per hour by transport. Background (every client told
so, writes going on): requests, goal 0. Foreground again: requests per client and seconds until
every client is fresh. Then the service is SIGTERMed and started again on the same port: when
each stream client's reconnect attempts come (per half second after the SIGTERM: no herd), and
how long until each is live again.
"""

import json
import subprocess
import time
from dataclasses import dataclass, field

from bench import pg
from bench.services import NO_LIMIT, ROOT, gunicorn, migrate, service_env
from bench.tables import table

CLIENT_DB = "bench_client"
JS = ROOT / "clients" / "js"
LATENCY_P99_GOAL_MS = 100
BACKGROUND_GOAL = 0


@dataclass
class ClientResult:
    """What clients.mjs measured (its `result` object), and the command's settings."""

    clients: int
    figures: dict = field(default_factory=dict)


def build_client() -> None:
    """The package's dist/, from its lockfile's dependencies (installed if missing)."""
    if not (JS / "node_modules").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=JS, check=True)
    subprocess.run(["npm", "run", "--silent", "build"], cwd=JS, check=True, stdout=subprocess.DEVNULL)


def run_client_bench(admin_url: str, redis_url: str, clients: int, seconds: float,
                     writes_per_second: float, workers: int = 2) -> ClientResult:
    """The whole section on a database of its own; every process started here is stopped."""
    build_client()
    pg.recreate_database(admin_url, CLIENT_DB)
    url = pg.database_url(admin_url, CLIENT_DB)
    migrate(url, redis_url)
    env = service_env(url, redis_url, rate_limit=NO_LIMIT, anonymous_rate_limit=NO_LIMIT, poll_interval=30,
                      max_streams=clients + 100)
    server = gunicorn(env, workers=workers, worker_class="gevent").start()
    config = {"url": server.url, "secret": env["COUNTS_JWT_SECRET"], "clients": clients,
              "foregroundSeconds": seconds, "backgroundSeconds": seconds / 3,
              "writesPerSecond": writes_per_second}
    node = subprocess.Popen(["node", "bench/clients.mjs", json.dumps(config)], cwd=JS, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    result = ClientResult(clients)
    try:
        for line in node.stdout:
            message = json.loads(line)
            if message.get("event") == "restart":
                sigterm_at = time.time() * 1000
                server.stop()  # SIGTERM: streams get their hints over COUNTS_STREAM_SHUTDOWN_SECONDS
                server.start()  # the same port, as a restarted instance behind its address
                node.stdin.write(json.dumps({"sigterm_at": sigterm_at, "up_at": time.time() * 1000}) + "\n")
                node.stdin.flush()
            elif "result" in message:
                result.figures = message["result"]
            else:
                print(f"client bench: {message.get('text', message)}", flush=True)
        if node.wait(timeout=60) != 0 or not result.figures:
            raise RuntimeError("clients/js/bench/clients.mjs failed; see its output above")
    finally:
        if node.poll() is None:
            node.kill()
        server.stop()
    print_figures(result)
    return result


def busiest_share(buckets: dict[str, int]) -> float:
    """The busiest half second's share of all (a herd: most of them in one instant)."""
    return max(buckets.values(), default=0) / max(1, sum(buckets.values()))


def histogram(buckets: dict[str, int]) -> str:
    """`1.5 s: 2, 2.0 s: 3, ...` in time order."""
    ordered = sorted(buckets.items(), key=lambda item: float(item[0]))
    return ", ".join(f"{float(start):.1f} s: {count}" for start, count in ordered)


def summary_rows(r: ClientResult) -> list[tuple[str, str, str]]:
    """(figure, measured, goal) rows, for the console and RESULTS.md."""
    f = r.figures
    restart = f["restart"]
    back = restart["back_seconds"]
    first = restart["first_attempt_seconds"]
    fg = f["foreground_requests_per_client_hour"]
    latency = f["latency_ms"]
    return [
        ("clients (SSE / WebSocket / polling)",
         f"{f['clients']:,} ({f['groups']['sse']} / {f['groups']['ws']} / {f['groups']['poll']})", "1,000"),
        (f"write-to-snapshot latency, {f['writes']:,} writes from their 201", f"p50 {latency['p50']} ms, "
         f"p99 {latency['p99']} ms (max {latency['max']} ms)",
         f"p99 <= {LATENCY_P99_GOAL_MS} ms: {'met' if latency['p99'] <= LATENCY_P99_GOAL_MS else 'NOT met'}"),
        (f"requests per client per hour, foreground ({f['foreground_seconds']:.0f} s measured)",
         f"SSE {fg['sse']:.0f}, WebSocket {fg['ws']:.0f}, polling {fg['poll']:.0f}", "-"),
        (f"requests per client per hour, background ({f['background_seconds']:.0f} s measured)",
         f"{f['background_requests_per_client_hour']:.1f} ({f['background_requests']} requests in all)",
         f"{BACKGROUND_GOAL}: {'met' if f['background_requests'] == BACKGROUND_GOAL else 'NOT met'}"),
        ("back in the foreground: requests per client, seconds until every client is fresh",
         f"{f['return_requests_per_client']:.2f}, {f['return_fresh_seconds']:.1f} s", "-"),
        (f"server restart (SIGTERM, down {restart['down_seconds']:.1f} s): {restart['streams']:,} "
         "streams back after (p50 / p90 / p99 / max)",
         f"{back['p50']:.1f} / {back['p90']:.1f} / {back['p99']:.1f} / {back['max']:.1f} s", "-"),
        ("each stream's first reconnect attempt after the SIGTERM (p1 / p50 / p99), and the busiest half "
         "second's share of them",
         f"{first['p1']:.1f} / {first['p50']:.1f} / {first['p99']:.1f} s; "
         f"{100 * busiest_share(restart['first_attempts_per_half_second']):.0f} %",
         "no herd (an even spread over the server's 1-6 s hints: 10 % a half second)"),
        ("reconnect attempts in all (some find the service still down and back off)",
         f"{restart['attempts']:,} for {restart['streams']:,} streams; busiest half second "
         f"{100 * busiest_share(restart['attempts_per_half_second']):.0f} %", "-"),
        ("clients that heard an ETag twice", str(f["clients_hearing_an_etag_twice"]), "0"),
    ]


def print_figures(r: ClientResult) -> None:
    """The figures against their goals, on the console, and how connections ended."""
    for figure, measured, goal in summary_rows(r):
        print(f"client bench: {figure}: {measured} (goal: {goal})", flush=True)
    print(f"client bench: connections ended, by phase: {outcome_lines(r)}", flush=True)


def outcome_lines(r: ClientResult) -> str:
    """`phase:transport:outcome (reason): n, ...`, the phases in the order they ran."""
    order = ["start", "foreground", "background", "return", "restart"]
    items = sorted(r.figures.get("outcomes", {}).items(),
                   key=lambda item: (order.index(item[0].split(":")[0]) if item[0].split(":")[0] in order
                                     else len(order), item[0]))
    return "; ".join(f"{key}: {count}" for key, count in items)


def client_section(r: ClientResult | None) -> list[str]:
    """RESULTS.md: the client section."""
    if r is None:
        return []

    return ["## The TypeScript client (issue 18)", "",
            f"{r.clients:,} `@counts/client` clients in one Node process (`clients/js/bench/clients.mjs`, "
            "Node's fetch for SSE, the ws package for WebSocket with the Authorization header, a "
            "tenth polling only) against two gevent workers. Latency is from each write's 201 to "
            "the recipient's snapshot (a snapshot that beat the 201 counts as 0). Requests per "
            "hour are what the clients sent in the measured window, scaled to an hour: a stream "
            "client's foreground cost is its renewals (one per token lifetime, an hour here) and "
            "reconnects, which a short window mostly does not see. The restart is a single "
            "instance's: SIGTERM, wait for it to exit, start again on the same port; attempts "
            "that find it down back off and come again.", "",
            *table(["", "measured", "goal"], [list(row) for row in summary_rows(r)]), "",
            "First reconnect attempts per half second after the SIGTERM: "
            + histogram(r.figures["restart"]["first_attempts_per_half_second"]), "",
            "All reconnect attempts per half second after the SIGTERM: "
            + histogram(r.figures["restart"]["attempts_per_half_second"]), "",
            "How connections ended (phase:transport:outcome, answered requests included): "
            + outcome_lines(r), ""]
