"""gunicorn settings for counts (`gunicorn -c gunicorn.conf.py wsgi:app`), from counts' own
settings (counts.settings: COUNTS_* and friends in the environment). What a worker does when it
starts and stops is in counts.lifecycle."""

import atexit
import os
import resource
import shutil
import sys
import tempfile

from counts import lifecycle
from counts.settings import Settings, SettingsError

try:
    settings = Settings.from_env()
except SettingsError as error:
    sys.exit(f"counts: {error}")  # one line saying what to fix, not a traceback

# The API, and the operators' address (counts.admin: metrics, detailed readiness).
bind = [settings.server.bind, *([settings.server.admin_bind] if settings.server.admin_bind else [])]
workers = settings.server.workers
# gevent: live connections (long-polls, SSE, WebSocket) wait by the thousand, and gthread pins a
# thread to each (at ~2,000 waits a plain request to the worker hung). gevent's monkey-patching
# makes redis-py and threading cooperative, and psycopg2 waits through counts.postgres.pool's callback on
# select.select, which gevent patches too. On the 304 path it measures within noise of gthread
# (bench/RESULTS.md, hot path).
worker_class = "gevent"
# Greenlets without their spawning stack and tree: tracemalloc put that at ~800 bytes of every
# held live connection (gevent.pool's spawn), and nothing here reads them.
os.environ.setdefault("GEVENT_TRACK_GREENLET_TREE", "false")
# Concurrent connections per worker: its live connections (COUNTS_MAX_STREAMS) and room for
# plain requests beside them.
worker_connections = settings.live.max_streams + 1000
threads = settings.http.threads  # gthread only (a `-k gthread` override)
# A request is bounded by the Postgres/Redis timeouts (seconds); this only catches a stuck worker.
timeout = 30
# Covers the spread-out close of live connections (COUNTS_STREAM_SHUTDOWN_SECONDS, 5) with room
# for the requests in flight.
graceful_timeout = 20
keepalive = 30
# Headers bigger than this are refused with 431/400 before the app sees them.
limit_request_field_size = 8190
# The app logs one JSON line per request itself (counts.observe), 304s included; gunicorn's own
# lines go through the same JSON formatter, and it builds no access-log line.
accesslog = None
logger_class = "counts.observability.logs.GunicornLogger"
loglevel = settings.server.log_level
# One fixed socket path per user ($HOME/.gunicorn/gunicorn.ctl) would be fought over by every
# instance on the machine (tests run several); nothing here uses gunicornc.
control_socket_disable = True


def on_starting(server):
    """Check the counts source; give the workers an empty metrics directory, and file
    descriptors for every connection a worker may hold (the soft limit is often 1,024; the hard
    one much more)."""
    check_source(server)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = worker_connections + 1000  # sockets to clients, Postgres, Redis, and files
    if soft != resource.RLIM_INFINITY and soft < wanted:
        limit = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    # Before any worker imports prometheus_client: each writes its samples here, and /metrics
    # sums them (prometheus-client's multiprocess mode). Made here, not at import, and removed
    # however the master ends (a failed start included).
    directory = settings.server.metrics_dir
    if directory is None:
        directory = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="counts-metrics-")
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
    else:
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory, exist_ok=True)


def check_source(server):
    """In attached mode, refuse to start unless COUNTS_UNREAD_FUNCTION meets the contract.

    Here, in the master, once per start and before the port is bound: a bad name stops the
    deploy with one line (gunicorn prints "Error: ..." and exits 1) rather than a traceback
    from every worker. Its connection is closed at once; the master loads only counts.settings
    and counts.source, never the app, whose modules the workers import after fork (gevent
    patches them there).
    """
    if settings.source.mode == "own":
        return
    from counts.sources import check_at_start

    warning = check_at_start(settings)  # raises RuntimeError with the reason
    if warning:
        server.log.warning("%s; starting anyway", warning)


def when_ready(server):
    """Say where the service answers, once it does."""
    admin = f", operators on http://{settings.server.admin_bind}" if settings.server.admin_bind else ""
    server.log.info("counts on http://%s%s", settings.server.bind, admin)


def child_exit(server, worker):
    """A dead worker's live gauges must stop counting (its counters stay in the sums)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker):
    lifecycle.worker_started(worker)


def pre_request(worker, req):
    lifecycle.request_started(req)


def post_request(worker, req, environ, resp):
    lifecycle.request_finished(worker, environ)


def worker_exit(server, worker):
    lifecycle.worker_stopping(worker)
