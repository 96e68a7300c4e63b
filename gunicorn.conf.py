"""gunicorn settings for counts (`gunicorn -c gunicorn.conf.py wsgi:app`); env vars override."""

import contextlib
import os
import resource
import shutil
import socket
import tempfile
import threading
import weakref

# Before any worker imports prometheus_client: each worker writes its samples here, and /metrics
# sums the directory (prometheus-client's multiprocess mode). Emptied at start, removed at exit.
_metrics_dir_is_ours = "PROMETHEUS_MULTIPROC_DIR" not in os.environ
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="counts-metrics-"))

# The API, and the operators' address (counts.admin: metrics, detailed readiness); an empty
# COUNTS_ADMIN_BIND serves neither.
bind = [os.environ.get("COUNTS_BIND") or "127.0.0.1:8000"]
if os.environ.get("COUNTS_ADMIN_BIND", "127.0.0.1:8002"):
    bind.append(os.environ.get("COUNTS_ADMIN_BIND", "127.0.0.1:8002"))
workers = int(os.environ.get("COUNTS_WORKERS", "2"))
# gevent: live connections (long-polls, SSE, WebSocket) wait by the thousand, and gthread pins a
# thread to each (at ~2,000 waits a plain request to the worker hung). gevent's monkey-patching
# makes redis-py and threading cooperative, and psycopg2 waits through counts.db's callback on
# select.select, which gevent patches too. On the 304 path it measures within noise of gthread
# (bench/RESULTS.md, hot path).
worker_class = "gevent"
# Greenlets without their spawning stack and tree: tracemalloc put that at ~800 bytes of every
# held live connection (gevent.pool's spawn), and nothing here reads them.
os.environ.setdefault("GEVENT_TRACK_GREENLET_TREE", "false")
# Concurrent connections per worker: its live connections (COUNTS_MAX_STREAMS) and room for
# plain requests beside them.
worker_connections = int(os.environ.get("COUNTS_MAX_STREAMS", "10000")) + 1000
threads = int(os.environ.get("COUNTS_THREADS", "8"))  # gthread only (a `-k gthread` override)
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
logger_class = "counts.logs.GunicornLogger"
loglevel = os.environ.get("COUNTS_LOG_LEVEL", "info")
# One fixed socket path per user ($HOME/.gunicorn/gunicorn.ctl) would be fought over by every
# instance on the machine (tests run several); nothing here uses gunicornc.
control_socket_disable = True


def on_starting(server):
    """Check the counts source; start with no samples left in the metrics directory, and file
    descriptors for every connection a worker may hold (the soft limit is often 1,024; the hard
    one much more)."""
    check_source(server)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = worker_connections + 1000  # sockets to clients, Postgres, Redis, and files
    if soft != resource.RLIM_INFINITY and soft < wanted:
        limit = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory, exist_ok=True)


def check_source(server):
    """In attached mode, refuse to start unless COUNTS_UNREAD_FUNCTION meets the contract.

    Here, in the master, once per start and before the port is bound: a bad name stops the
    deploy with one line (gunicorn prints "Error: ..." and exits 1) rather than a traceback
    from every worker. Its connection is closed at once; the master loads only counts.config
    and counts.source, never the app, whose modules the workers import after fork (gevent
    patches them there).
    """
    if os.environ.get("COUNTS_SOURCE", "own") in ("", "own"):
        return
    from counts.config import load_config
    from counts.source import check_at_start

    warning = check_at_start(load_config())  # raises RuntimeError with the reason
    if warning:
        server.log.warning("%s; starting anyway", warning)


def child_exit(server, worker):
    """A dead worker's live gauges must stop counting (its counters stay in the sums)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    """Remove the metrics directory if this config made it."""
    if _metrics_dir_is_ours:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


def _resources(worker):
    """The service's resources, or None (another app, such as the bench floor, or a failed boot)."""
    return getattr(getattr(worker, "wsgi", None), "extensions", {}).get("counts")


def post_worker_init(worker):
    """Each worker drains the bump outbox on its own thread (after fork: no shared sockets), in
    attached mode relays counts.bump() notifications on another, and closes its live connections
    over a few seconds once told to stop."""
    resources = _resources(worker)
    if resources is None:
        return
    _find_admin_listener(worker, resources)
    if resources.drain_interval > 0:
        worker.counts_drainer = resources.start_drainer()
    if resources.source.relays_bumps:
        worker.counts_relay = resources.start_relay()
    threading.Thread(target=_close_live_connections_at_exit, args=(worker, resources),
                     name="counts-live-exit", daemon=True).start()


def _find_admin_listener(worker, resources):
    """Tell the app which of the worker's listeners is COUNTS_ADMIN_BIND (counts.admin)."""
    from gunicorn.util import parse_address

    from counts.admin import listener_key

    if resources.admin_bind is None:
        return
    wanted = listener_key(parse_address(resources.admin_bind))
    if any(listener_key(sock.getsockname()) == wanted for sock in worker.sockets):
        resources.admin_listener = wanted
        return
    worker.log.warning("COUNTS_ADMIN_BIND %s is not among the addresses gunicorn listens on: "
                       "no metrics are served", resources.admin_bind)


# Client sockets between two requests of a keep-alive connection. The gevent worker waits for
# every connection to end before it exits, idle ones included, so a balancer's pooled
# connection held every deploy for graceful_timeout and lost the access log to the SIGKILL.
_idle_sockets = weakref.WeakSet()


def pre_request(worker, req):
    """The connection is busy with a request: not idle."""
    _idle_sockets.discard(getattr(req.unreader, "sock", None))


def post_request(worker, req, environ, resp):
    """The connection waits for its next request: idle (closed at once if the worker stops).

    A request that outlived the stop (a stream closed by the shutdown, a long-poll) ends its
    connection now: gunicorn decided to keep it alive when the request began, and the worker
    would otherwise wait graceful_timeout for a next request that must not come.
    """
    sock = environ.get("gunicorn.socket")
    if sock is None:
        return
    if worker.alive:
        _idle_sockets.add(sock)
    else:
        with contextlib.suppress(OSError):  # the client hung up already
            sock.shutdown(socket.SHUT_RDWR)


def _close_live_connections_at_exit(worker, resources):
    """Wait for the worker to be told to stop (SIGTERM: worker.alive turns False), then end its
    idle keep-alive connections at once (gthread does the same) and its live connections spread
    over COUNTS_STREAM_SHUTDOWN_SECONDS, within graceful_timeout."""
    import time

    while worker.alive:
        time.sleep(0.25)
    for sock in list(_idle_sockets):
        with contextlib.suppress(OSError):  # closed meanwhile
            sock.shutdown(socket.SHUT_RDWR)
    resources.feed.shut_down(resources.stream_shutdown_seconds)


def worker_exit(server, worker):
    """Stop the drainer and the relay, and close pooled Postgres connections with the worker."""
    for name in ("counts_drainer", "counts_relay"):
        thread = getattr(worker, name, None)
        if thread is not None:
            thread.stop()
    resources = _resources(worker)
    if resources is not None:
        resources.close()
