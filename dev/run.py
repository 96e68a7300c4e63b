"""`make run`: the service on this machine, in one command, until Ctrl-C.

Postgres and Redis come from DATABASE_URL and REDIS_URL when set, else embedded ones under .data/
(dev.services). A JWT secret and a Web Push key are made once under .data/ when the environment
has none. Then, in this order, each step stopping the run with one line saying what to fix: the
settings are checked, the addresses it listens on must be free (a second `make run` says so
instead of half-starting), the schema is brought up to date (a database that does not exist says
so), .env is written (every setting of this run, so that `flask --app app token|bump|...` in
another terminal talks to the same services with the same secret), and gunicorn starts with one
push dispatcher beside it. Ctrl-C stops both cleanly: they run in their own process groups, so
only this process gets the terminal's signal, and it hands each a SIGTERM.
"""

import argparse
import logging
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from counts.errors import DependencyUnavailable
from counts.postgres import migrations
from counts.postgres.pool import Database
from counts.push import vapid
from counts.settings import Settings, SettingsError
from counts.sources import from_settings
from dev.services import ensure_services

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / ".data"
BIN = Path(sys.executable).parent
# Written to .env: what the server reads, and nothing of the test suite's.
ENV_FILE_PREFIXES = ("COUNTS_", "DATABASE_URL", "DATABASE_REPLICA_URLS", "REDIS_URL")


class Stop(Exception):
    """A reason not to start, said in one line."""


def kept_secret(data: Path, name: str, make: str) -> str:
    """A value made once and kept under .data/ (a development JWT secret, a VAPID key)."""
    path = data / name
    if not path.exists() or not path.read_text().strip():
        path.write_text(make + "\n")
    return path.read_text().strip()


def environment(data: Path) -> dict[str, str]:
    """This run's environment: the caller's, the services, and development defaults."""
    data.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **ensure_services(str(data), prefer_local=False)}
    if "COUNTS_JWT_SECRET" not in env:
        env["COUNTS_JWT_SECRET"] = kept_secret(data, "jwt-secret", secrets.token_urlsafe(32))
    if "COUNTS_VAPID_PRIVATE_KEY" not in env:
        env["COUNTS_VAPID_PRIVATE_KEY"] = kept_secret(data, "vapid-private-key", vapid.generate())
    env.setdefault("COUNTS_VAPID_SUBJECT", "mailto:dev@localhost")
    env.setdefault("COUNTS_PUSH_METRICS_PORT", "8001")
    return env


def check_free(address: str, variable: str) -> None:
    """Stop if host:port is taken (unix sockets are gunicorn's to judge)."""
    if address.startswith("unix:"):
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_server((host.strip("[]") or "127.0.0.1", int(port))):
            return
    except OSError as error:
        raise Stop(f"{address} ({variable}) is taken: another `make run`, or another service, "
                   f"listens there ({os.strerror(error.errno) if error.errno else error}). "
                   f"Stop it, or set {variable}.") from None


def upgrade_schema(settings: Settings) -> None:
    """Apply the migrations; a database that cannot be reached says why, once (the pool's own
    warning would say it a second time, less clearly)."""
    logging.getLogger("counts.postgres.pool").setLevel(logging.ERROR)
    source = from_settings(settings.source)
    db = Database(settings.postgres.url, settings.postgres.timeout, 1, schema=source.schema)
    try:
        applied = migrations.upgrade(db, source.name, source.schema)
        problem = db.read(source.problem)
    except DependencyUnavailable as error:
        cause = str(error.__cause__ or error).strip().splitlines()[-1]
        hint = (" Create it first (createdb, or CREATE DATABASE)." if "does not exist" in cause
                else "")
        raise Stop(f"Postgres at DATABASE_URL cannot be used: {cause}.{hint}") from None
    finally:
        db.close()
    print(f"schema: {'applied ' + ', '.join(applied) if applied else 'up to date'}", flush=True)
    if problem is not None:
        raise Stop(problem)


def write_env_file(env: dict[str, str], path: Path) -> None:
    """.env for `flask --app app ...`: every setting of this run, quoted for python-dotenv."""
    lines = [f"{name}={shlex.quote(value)}" for name, value in sorted(env.items())
             if name.startswith(ENV_FILE_PREFIXES) and not name.startswith("COUNTS_TEST_")]
    path.write_text("\n".join(lines) + "\n")


def serve(env: dict[str, str]) -> int:
    """gunicorn and one push dispatcher until Ctrl-C (or one of them ends): its exit status."""
    def start(command: list[str]) -> subprocess.Popen:
        return subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)

    server = start([str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "wsgi:app"])
    dispatcher = start([str(BIN / "flask"), "--app", "app", "push-worker"])
    children = (server, dispatcher)

    def stop(*_: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while all(child.poll() is None for child in children):
        time.sleep(0.2)  # whichever ends first, the other follows
    stop()
    return max(child.wait() for child in children)


def main() -> int:
    """Check, prepare, serve."""
    parser = argparse.ArgumentParser(prog="python -m dev.run", description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DATA, help="the embedded services and kept keys")
    parser.add_argument("--env-file", type=Path, default=ROOT / ".env", help="written once the run starts")
    args = parser.parse_args()
    try:
        env = environment(args.data_dir)
        settings = Settings.from_env(env)
        check_free(settings.server.bind, "COUNTS_BIND")
        if settings.server.admin_bind:
            check_free(settings.server.admin_bind, "COUNTS_ADMIN_BIND")
        if settings.push.metrics_port:
            check_free(f"{settings.push.metrics_host}:{settings.push.metrics_port}",
                       "COUNTS_PUSH_METRICS_PORT")
        upgrade_schema(settings)
    except (Stop, SettingsError, RuntimeError) as reason:
        print(f"counts: {reason}", file=sys.stderr)
        return 1
    write_env_file(env, args.env_file)
    return serve(env)


if __name__ == "__main__":
    sys.exit(main())
