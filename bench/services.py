"""The processes a benchmark run owns: a private Postgres and Redis, gunicorn servers, CPU meters.

Nothing shared is touched: Postgres and Redis are started on free ports with their data under
bench/out/, and every process is stopped by the pid this module started. The launchers are the
tests' (tests/support/services.py), with the bench's settings: pinning, the worker class, logs
under bench/out/.
"""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from dev.services import private_postgres
from tests.support import ROOT
from tests.support.services import Gunicorn, PrivateRedis, free_port

OUT = ROOT / "bench" / "out"
HOST = "127.0.0.1"
BIN = Path(sys.executable).parent
JWT_SECRET = "bench-secret-0123456789-0123456789-0123456789"  # noqa: S105 - a private bench server
NO_LIMIT = 10**9  # COUNTS_RATE_LIMIT that keeps the limiter's code path but never refuses

# A benchmark cluster: pg_stat_statements for counting queries; durability off (a throwaway
# cluster on a VM disk), which only speeds seeding and writes, never the read path we measure.
PG_SETTINGS = (
    "shared_preload_libraries=pg_stat_statements", "pg_stat_statements.max=1000",
    "shared_buffers=3GB", "work_mem=16MB", "maintenance_work_mem=1GB", "max_connections=200",
    "fsync=off", "synchronous_commit=off", "full_page_writes=off", "wal_level=minimal",
    "max_wal_senders=0", "max_wal_size=8GB", "autovacuum=off", "jit=off",
)


def stop_process(proc: subprocess.Popen, timeout: float = 25.0) -> None:
    """Stop a process this module started: SIGTERM, then SIGKILL if it does not exit in time."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@dataclass
class Backends:
    """The private Postgres (admin URL and postmaster pid) and Redis (URL and pid) of a run."""

    pg_admin_url: str
    pg_pid: int
    redis_url: str
    redis_pid: int


@contextlib.contextmanager
def backends(keep_data: bool = False) -> Iterator[Backends]:
    """Start a private Postgres (pg_stat_statements preloaded) and Redis; stop and clean up after."""
    pg_dir, redis_dir = OUT / "postgres", OUT / "redis"
    shutil.rmtree(pg_dir, ignore_errors=True)  # every run starts from an empty cluster
    try:
        with private_postgres(str(pg_dir), free_port(), PG_SETTINGS) as pg_url, \
                PrivateRedis(redis_dir, args=("--databases", "4")) as redis_server:
            postmaster = int((pg_dir / "data" / "postmaster.pid").read_text().split()[0])
            yield Backends(pg_url, postmaster, redis_server.url, redis_server.process.pid)
    finally:
        if not keep_data:
            shutil.rmtree(pg_dir, ignore_errors=True)


def migrate(database_url: str, redis_url: str) -> None:
    """Create the service's schema the way a deploy does: `flask --app app db upgrade`."""
    env = service_env(database_url, redis_url)
    subprocess.run([str(BIN / "flask"), "--app", "app", "db", "upgrade"], cwd=ROOT, env=env,
                   check=True, stdout=subprocess.DEVNULL)


def service_env(database_url: str, redis_url: str, **settings: str) -> dict[str, str]:
    """The environment the service reads its configuration from."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("COUNTS_")}
    # The default log level (info): every request writes its JSON line, as in production.
    env.update(DATABASE_URL=database_url, REDIS_URL=redis_url, COUNTS_JWT_SECRET=JWT_SECRET)
    env.update({f"COUNTS_{key.upper()}": str(value) for key, value in settings.items()})
    return env


def gunicorn(env: dict[str, str], app: str = "wsgi:app", *, worker_class: str = "gthread",
             admin: bool = False, **options) -> Gunicorn:
    """A gunicorn of the bench's serving `app`: gthread unless told otherwise (pass cpus= to pin
    it), no operators' address unless `admin` (its /metrics), its log in
    bench/out/gunicorn-<port>.log."""
    OUT.mkdir(parents=True, exist_ok=True)
    port = free_port()
    return Gunicorn(env, app=app, worker_class=worker_class, admin=admin, port=port,
                    log_path=OUT / f"gunicorn-{port}.log", **options)


class CpuMeter:
    """CPU seconds used by groups of processes between start() and stop().

    Groups named in `recursive` count their descendants too (Postgres backends come and go).
    """

    def __init__(self, groups: dict[str, list[int]], recursive: tuple[str, ...] = ("postgres",)):
        self.groups = groups
        self.recursive = recursive
        self._start: dict[str, dict[int, float]] = {}
        self._machine_start = psutil.cpu_times()
        self._wall_start = time.monotonic()
        self.seconds: dict[str, float] = {}
        self.wall = 0.0
        self.machine_busy = 0.0  # cores busy, machine-wide (every process, ours or not)

    @staticmethod
    def _sample(pids: list[int], recursive: bool) -> dict[int, float]:
        """CPU seconds so far of each process (and, if recursive, its descendants)."""
        found: dict[int, float] = {}
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                for each in [proc, *(proc.children(recursive=True) if recursive else [])]:
                    with contextlib.suppress(psutil.Error):
                        times = each.cpu_times()
                        found[each.pid] = times.user + times.system
        return found

    def start(self) -> "CpuMeter":
        """Take the starting sample."""
        self._start = {name: self._sample(pids, name in self.recursive)
                       for name, pids in self.groups.items()}
        self._machine_start = psutil.cpu_times()
        self._wall_start = time.monotonic()
        return self

    def stop(self) -> "CpuMeter":
        """Take the closing sample and compute each group's CPU seconds."""
        self.wall = time.monotonic() - self._wall_start
        for name, pids in self.groups.items():
            end, start = self._sample(pids, name in self.recursive), self._start[name]
            self.seconds[name] = sum(used - start.get(pid, 0.0) for pid, used in end.items())
        machine = psutil.cpu_times()
        busy = sum(getattr(machine, key) - getattr(self._machine_start, key)
                   for key in ("user", "nice", "system", "irq", "softirq", "steal"))
        self.machine_busy = busy / self.wall if self.wall else 0.0
        return self

    def cores(self, name: str) -> float:
        """Average cores a group used."""
        return self.seconds.get(name, 0.0) / self.wall if self.wall else 0.0
