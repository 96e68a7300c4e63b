"""Fixtures for the fault matrix: the real service under gunicorn, on paths a test may break."""

from pathlib import Path

import psutil
import pytest

from tests.conftest import MARKER_TTL, SECRET
from tests.support.services import Gunicorn, PrivateRedis, TcpProxy

# Small timeouts so hung dependencies cost little, a fast drainer so repairs come quickly, and no
# rate limit: the pollers poll far faster than a real client may.
PG_TIMEOUT = 1.0
REDIS_TIMEOUT = 0.3
DRAIN_INTERVAL = 0.2


class Service:
    """The service under gunicorn (2 workers), its log in a file of the test's own."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.server = Gunicorn(env, workers=2, threads=8, log_path=log_path)
        self.log_path = log_path

    def start(self) -> "Service":
        """Start gunicorn and wait until it answers."""
        self.server.start()
        return self

    @property
    def url(self) -> str:
        """Where the service answers."""
        return self.server.url

    @property
    def process(self):
        """The gunicorn master process."""
        return self.server.process

    def worker_pids(self) -> set[int]:
        """The gunicorn master's live worker processes now (not the dead, unreaped ones)."""
        return {child.pid for child in psutil.Process(self.process.pid).children()
                if child.status() != psutil.STATUS_ZOMBIE}

    def log_tail(self, lines: int = 40) -> str:
        """The end of the service's log, for failure messages."""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM the master and wait for it (nothing if it already exited)."""
        self.server.stop()


def service_env(database_url: str, redis_url: str) -> dict[str, str]:
    """The service's environment for the fault tests."""
    return {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "COUNTS_JWT_SECRET": SECRET,
            "COUNTS_POLL_INTERVAL": "1", "COUNTS_MARKER_TTL": str(MARKER_TTL),
            "COUNTS_OUTBOX_DRAIN_INTERVAL": str(DRAIN_INTERVAL),
            "COUNTS_PG_TIMEOUT": str(PG_TIMEOUT), "COUNTS_REDIS_TIMEOUT": str(REDIS_TIMEOUT),
            "COUNTS_RATE_LIMIT": "0", "COUNTS_ANONYMOUS_RATE_LIMIT": "0",
            "COUNTS_STREAM_SHUTDOWN_SECONDS": "0.5"}


@pytest.fixture
def start_service(database_url, pg, tmp_path):
    """Start the service on a Redis URL (and optionally another database URL); stopped after."""
    started: list[Service] = []

    def start(redis_url: str, db_url: str = database_url, **env: str) -> Service:
        """A started service on these URLs, with `env` overriding the fault-test settings."""
        log_path = tmp_path / f"gunicorn-{len(started)}.log"
        started.append(Service({**service_env(db_url, redis_url), **env}, log_path).start())
        return started[-1]

    yield start
    for service in started:
        service.stop()


@pytest.fixture
def redis_proxy(private_redis):
    """A cuttable TCP proxy in front of this test's own Redis."""
    proxy = TcpProxy(private_redis.port)
    yield proxy
    proxy.close()


def redis_url_through(proxy: TcpProxy) -> str:
    """The URL of the Redis behind `proxy`, reached through it."""
    return f"redis://127.0.0.1:{proxy.port}/0"


@pytest.fixture
def evicting_redis(tmp_path):
    """A private Redis of 2 MB that evicts any key, least recently used first."""
    server = PrivateRedis(tmp_path).start(extra=("--maxmemory", "2mb",
                                                 "--maxmemory-policy", "allkeys-lru"))
    yield server
    server.stop()
