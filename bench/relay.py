"""`python -m bench.relay`: how long a SQL write takes to reach Redis through the LISTEN relay.

Starts a private Postgres and Redis (bench.services), the service attached to a database of its
own under gunicorn, and one writer committing at a steady rate. Each write bumps a user nobody
bumped before, so the first change of that user's marker is this write's: a Redis
keyspace-notification subscriber notes when it happens. The latency is from COMMIT returning
to the writer to the marker changing in Redis, both read on this process's monotonic clock.

  --via bump      each write is `SELECT counts.bump(ARRAY[user])` in its own transaction
  --via message   each write is an INSERT into examples/supabase-chat's messages, whose trigger
                  (lock, participants, counts.bump) bumps the other participant
  --load N        meanwhile wrk keeps N connections of 304 polls on the workers (needs wrk),
                  so the relay thread competes with busy request threads, as in production
"""

import argparse
import re
import statistics
import subprocess
import sys
import threading
import time
import uuid

import redis
import requests

from bench import pg
from bench.services import BIN, JWT_SECRET, NO_LIMIT, ROOT, backends, gunicorn, service_env
from counts.identity import mint_token
from tests.support.services import wait_until

DATABASE = "bench_relay"
EXAMPLE = ROOT / "examples" / "supabase-chat"
NO_MARKER_FUNCTION = """
CREATE FUNCTION public.counts_unread(user_ids uuid[])
RETURNS TABLE (user_id uuid, conversation_id uuid, unread bigint)
LANGUAGE sql AS 'SELECT NULL::uuid, NULL::uuid, 0::bigint WHERE false'
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.relay", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=100.0, help="commits per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds")
    parser.add_argument("--via", choices=("bump", "message"), default="bump")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (relays)")
    parser.add_argument("--worker-class", default="gthread", help="gunicorn worker class")
    parser.add_argument("--load", type=int, default=0, help="wrk connections polling meanwhile")
    return parser.parse_args(argv)


def poll_load(url: str, seconds: float, connections: int) -> subprocess.Popen:
    """wrk polling one user with its current ETag (304s, the common case) for `seconds`."""
    user = str(uuid.uuid4())
    path = f"{url}/v1/users/{user}/unread-counts"
    token = mint_token(JWT_SECRET, user)
    etag = requests.get(path, headers={"Authorization": f"Bearer {token}"}, timeout=5).headers["ETag"]
    return subprocess.Popen(
        ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s",
         "-H", f"Authorization: Bearer {token}", "-H", f"If-None-Match: {etag}", path],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


class MarkerWatch:
    """Notes when each user's marker first changes, from Redis keyspace notifications."""

    def __init__(self, redis_url: str):
        self.client = redis.Redis.from_url(redis_url)
        db = self.client.connection_pool.connection_kwargs.get("db", 0)
        self.client.config_set("notify-keyspace-events", "K$")  # SET (and SET in scripts)
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.psubscribe(f"__keyspace@{db}__:counts:{{*}}:marker")
        self.changed: dict[str, float] = {}
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        """Record the first change of each marker."""
        while not self.stopped.is_set():
            message = self.pubsub.get_message(timeout=0.2)
            if message is not None:
                at = time.perf_counter()
                user = message["channel"].decode().split("{", 1)[1].split("}", 1)[0]
                self.changed.setdefault(user, at)

    def __enter__(self) -> "MarkerWatch":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)
        self.pubsub.close()
        self.client.close()


def prepare(url: str, via: str, writes: int) -> list[tuple[str, str, str]]:
    """The app's side of the database; for --via message, one conversation per write
    (conversation, sender, recipient), so each write bumps a user of its own."""
    conn = pg.connect(url)
    with conn.cursor() as cur:
        if via == "bump":
            cur.execute(NO_MARKER_FUNCTION)
            conn.close()
            return []
        for name in ("local-supabase.sql", "schema.sql", "triggers.sql", "grants.sql"):
            cur.execute((EXAMPLE / name).read_text())
        cur.execute("""
            WITH pairs AS (SELECT gen_random_uuid() AS id, gen_random_uuid() AS sender,
                                  gen_random_uuid() AS recipient FROM generate_series(1, %s)),
                 made AS (INSERT INTO conversations (id, created_by) SELECT id, sender FROM pairs),
                 joined AS (INSERT INTO participants (conversation_id, user_id)
                            SELECT id, sender FROM pairs UNION ALL SELECT id, recipient FROM pairs)
            SELECT id::text, sender::text, recipient::text FROM pairs""", (writes,))
        pairs = cur.fetchall()
    conn.close()
    return pairs


def wait_until_ready(url: str, relays: int) -> None:
    """Until every worker's relay LISTENs and the setup's bumps are drained."""
    conn = pg.connect(url)
    with conn.cursor() as cur:
        def ready() -> bool:
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'counts-relay'")
            listening = cur.fetchone()[0]
            cur.execute("SELECT count(*) FROM counts.marker_outbox")
            return listening >= relays and cur.fetchone()[0] == 0

        wait_until(ready, timeout=30, what="the relays to listen and drain the setup")
    conn.close()


def write_steadily(url: str, args: argparse.Namespace, pairs) -> dict[str, float]:
    """Commit `rate` writes a second for `seconds`; when each COMMIT returned, by user bumped."""
    conn = pg.connect(url)
    committed: dict[str, float] = {}
    start, interval = time.perf_counter(), 1.0 / args.rate
    with conn.cursor() as cur:
        for n in range(int(args.rate * args.seconds)):
            time.sleep(max(0.0, start + n * interval - time.perf_counter()))
            cur.execute("BEGIN")
            if args.via == "bump":
                user = str(uuid.uuid4())
                cur.execute("SELECT counts.bump(ARRAY[%s]::uuid[])", (user,))
            else:
                conversation, sender, user = pairs[n]
                cur.execute("INSERT INTO messages (conversation_id, sender_id, body) VALUES (%s, %s, 'hi')",
                            (conversation, sender))
            cur.execute("COMMIT")
            committed[user] = time.perf_counter()
    conn.close()
    return committed


def report(args: argparse.Namespace, committed: dict[str, float], changed: dict[str, float],
           polls_per_second: float | None) -> str:
    """The figures, and the command that made them."""
    latencies = sorted((changed[user] - at) * 1000 for user, at in committed.items() if user in changed)
    missing = len(committed) - len(latencies)

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))]

    lines = [f"relay latency, COMMIT returned -> marker changed ({args.via}, {args.rate:g} commits/s "
             f"for {args.seconds:g} s, {args.workers} {args.worker_class} workers):",
             f"  commits {len(committed)}, markers seen {len(latencies)}, missing {missing}"
             + (f"; meanwhile {polls_per_second:,.0f} polls/s (wrk -c{args.load}, 304s)"
                if polls_per_second is not None else "")]
    if latencies:
        lines.append(f"  p50 {pct(50):.2f} ms  p90 {pct(90):.2f} ms  p99 {pct(99):.2f} ms  "
                     f"max {latencies[-1]:.2f} ms  mean {statistics.fmean(latencies):.2f} ms  "
                     f"min {latencies[0]:.2f} ms")
        lines.append(f"  goal p99 <= 50 ms: {'met' if pct(99) <= 50 else 'NOT met'}")
    lines.append("  command: " + " ".join([".venv/bin/python -m bench.relay", *sys.argv[1:]]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Start everything, measure, print, stop everything."""
    args = parse_args(argv)
    writes = int(args.rate * args.seconds)
    with backends() as b:
        pg.admin(b.pg_admin_url, f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)",
                 f"CREATE DATABASE {DATABASE}")
        url = pg.database_url(b.pg_admin_url, DATABASE)
        env = service_env(url, b.redis_url, source="attached", unread_function="public.counts_unread",
                          log_level="warning", rate_limit=NO_LIMIT)
        subprocess.run([str(BIN / "flask"), "--app", "app", "db", "upgrade"], cwd=ROOT, env=env,
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pairs = prepare(url, args.via, writes)
        with gunicorn(env, workers=args.workers, worker_class=args.worker_class) as server:
            wait_until_ready(url, args.workers)
            load = poll_load(server.url, args.seconds, args.load) if args.load else None
            with MarkerWatch(b.redis_url) as watch:
                committed = write_steadily(url, args, pairs)
                deadline = time.monotonic() + 5
                while len(watch.changed.keys() & committed.keys()) < len(committed) \
                        and time.monotonic() < deadline:
                    time.sleep(0.05)
            polls = None
            if load is not None:
                found = re.search(r"Requests/sec:\s*([\d.]+)", load.communicate(timeout=60)[0])
                polls = float(found.group(1)) if found else 0.0
        print(report(args, committed, watch.changed, polls))
    return 0


if __name__ == "__main__":
    sys.exit(main())
