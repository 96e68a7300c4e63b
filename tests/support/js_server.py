"""The counts service for the JS client's tests (clients/js), started as this suite starts it.

    python -m tests.support.js_server [--private-redis] [--workers N] [KEY=VALUE ...]

Creates a throwaway database (named with this process's id, dropped at exit), migrates it with
the service's own CLI, and runs gunicorn on a free port: on the machine's Redis db 13 (never
flushed), or on a private redis-server of its own with --private-redis (for tests that restart
Redis). KEY=VALUE arguments are extra settings for the service (COUNTS_MAX_STREAMS=1, ...).

Prints one JSON line, {"url", "jwt_secret", "redis_url", "database"}, then obeys one command per
line on stdin, answering each with {"done": command} (or {"error": ...}):
  restart        SIGTERM the service (its streams get their shutdown hints), then start it again
                 on the same port
  restart-redis  stop the private Redis without saving (every marker lost) and start it again
  stop           clean up and exit; so does the end of stdin (the test runner died)
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.support import ROOT
from tests.support.environment import REDIS_URL, SECRET, gunicorn_env
from tests.support.postgres import throwaway_database
from tests.support.services import Gunicorn, PrivateRedis


def migrate(env: dict[str, str]) -> None:
    """The schema, through the service's public CLI (not its internal modules)."""
    subprocess.run([sys.executable, "-m", "flask", "--app", "app", "db", "upgrade"], cwd=ROOT,
                   env={**env, "PATH": str(Path(sys.executable).parent)}, check=True,
                   stdout=subprocess.DEVNULL)


def answer(message: dict) -> None:
    print(json.dumps(message), flush=True)


def serve(server: Gunicorn, redis_server: PrivateRedis | None) -> None:
    """Obey stdin until `stop` or its end."""
    for line in sys.stdin:
        command = line.strip()
        if command == "stop":
            return
        if command == "restart":
            server.stop()
            server.start()
        elif command == "restart-redis" and redis_server is not None:
            redis_server.stop(save=False)
            redis_server.start()
        else:
            answer({"error": f"unknown command {command!r}"})
            continue
        answer({"done": command})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.js_server", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--private-redis", action="store_true")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("settings", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    extra = dict(setting.split("=", 1) for setting in args.settings)
    # A runner that kills us instead of closing stdin still gets its database dropped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with tempfile.TemporaryDirectory(prefix="counts-js-") as scratch, \
            throwaway_database(f"counts_js_{os.getpid()}") as database_url:
        redis_server = PrivateRedis(Path(scratch)).start() if args.private_redis else None
        try:
            env = gunicorn_env(database_url, redis_server.url if redis_server else REDIS_URL, **extra)
            migrate(env)
            server = Gunicorn(env, workers=args.workers, log_path=Path(scratch) / "gunicorn.log")
            server.start()
            try:
                answer({"url": server.url, "jwt_secret": SECRET, "redis_url": env["REDIS_URL"],
                        "database": database_url.rsplit("/", 1)[1]})
                serve(server, redis_server)
            finally:
                server.stop()
        finally:
            if redis_server is not None:
                redis_server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
