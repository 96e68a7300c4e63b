"""Where an idle live connection's bytes go: one gevent worker, N connections of one transport,
the worker's RSS, tracemalloc's allocation sites and gc's object counts before and after.

    .venv/bin/python -m bench.live_memory sse 2000            # RSS alone (tracemalloc off)
    .venv/bin/python -m bench.live_memory ws 2000 --trace     # and where the traced bytes go

Tracemalloc inflates RSS (its own records); read RSS from a run without --trace. What it does
not see is C memory outside Python's allocators: a greenlet's Python data stack chunk (mapped
directly, one page or two touched) and libev's watchers.
"""

import argparse
import asyncio
import json
import urllib.request
import uuid

from bench.live_clients import Client, run_client
from counts.identity import mint_token
from counts.postgres import migrations
from counts.postgres.pool import Database
from tests.support.environment import REDIS_URL, SECRET, gunicorn_env
from tests.support.postgres import throwaway_database
from tests.support.services import Gunicorn

WARM = 200  # connections opened before the first mark: what the first ones pay once


def mark(port: int, tag: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/__memory?{tag}", timeout=60) as answer:
        return json.load(answer)


async def open_all(clients: list[Client], port: int, stop: asyncio.Event) -> list[asyncio.Task]:
    """Open them 50 at a time (the pool of Postgres connections opens each stream's first
    counts), until each has its first counts or failed."""
    tasks = []
    for i, client in enumerate(clients):
        tasks.append(asyncio.ensure_future(run_client(client, port, stop)))
        if i % 50 == 49:
            await asyncio.sleep(0.5)
    while any(c.total is None and not c.error for c in clients):
        await asyncio.sleep(0.2)
    await asyncio.sleep(1)  # idle
    return tasks


async def measure(kind: str, n: int, port: int) -> dict:
    """Open WARM connections, mark, open n more, mark: the breakdown of what the n cost."""
    stop = asyncio.Event()

    def client() -> Client:
        user = str(uuid.uuid4())
        return Client(user, mint_token(SECRET, user), kind)

    tasks = await open_all([client() for _ in range(WARM)], port, stop)
    before = await asyncio.to_thread(mark, port, "a")
    measured = [client() for _ in range(n)]
    tasks += await open_all(measured, port, stop)
    after = await asyncio.to_thread(mark, port, "b")
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"kind": kind, "connections": n, "failed": [c.error for c in measured if c.error],
            "rss_kib": (after["rss"] - before["rss"]) / n / 1024,
            "traced_kib": (after["traced"] - before["traced"]) / n / 1024,
            "sites": [(size / n, count / n, site) for size, count, site in after.get("sites", [])],
            "objects": [(name, count / n) for name, count in after["objects"]]}


def breakdown(kind: str, n: int, database_url: str, redis_url: str, trace: bool = True) -> dict:
    """Where n idle connections of one transport go, on one worker of the service on this
    (migrated, empty) database and Redis: RSS and traced KiB each, allocation sites and object
    types per connection, largest first."""
    env = gunicorn_env(database_url, redis_url, COUNTS_STREAM_HEARTBEAT="15",
                       LIVE_MEMORY_FRAMES="1" if trace else "0")
    with Gunicorn(env, workers=1, app="bench.live_memory_app:app") as server:
        return asyncio.run(measure(kind, n, server.port))


def show(found: dict) -> None:
    """Print a breakdown as the command line shows it."""
    failed = found["failed"]
    print(f"{found['kind']}: {found['connections']:,} connections ({len(failed)} failed "
          f"{failed[:3]}): RSS {found['rss_kib']:.1f} KiB each, traced {found['traced_kib']:.1f} "
          "KiB each")
    for size, count, site in found["sites"]:
        print(f"{size:9.0f} B {count:5.1f}/conn  {site}")
    for name, count in found["objects"]:
        print(f"{count:6.2f}/conn  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["sse", "ws", "long-poll"])
    parser.add_argument("connections", type=int, nargs="?", default=2000)
    parser.add_argument("--trace", action="store_true", help="tracemalloc's allocation sites")
    args = parser.parse_args()
    with throwaway_database(f"counts_live_memory_{uuid.uuid4().hex[:8]}") as url:
        db = Database(url, timeout=10, pool_size=1)
        migrations.upgrade(db)
        db.close()
        show(breakdown(args.kind, args.connections, url, REDIS_URL, args.trace))


if __name__ == "__main__":
    main()
