"""gunicorn settings for counts (`gunicorn -c gunicorn.conf.py wsgi:app`); env vars override."""

import os
import shutil
import tempfile

# Before any worker imports prometheus_client: each worker writes its samples here, and /metrics
# sums the directory (prometheus-client's multiprocess mode). Emptied at start, removed at exit.
_metrics_dir_is_ours = "PROMETHEUS_MULTIPROC_DIR" not in os.environ
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="counts-metrics-"))

bind = os.environ.get("COUNTS_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("COUNTS_WORKERS", "2"))
# gthread: the 304 path is one short Redis round trip, so a few threads per worker keep the CPU
# busy while one waits; PERF-NOTES measured gevent within noise of it and sync 17-36 % slower.
worker_class = "gthread"
threads = int(os.environ.get("COUNTS_THREADS", "8"))
# A request is bounded by the Postgres/Redis timeouts (seconds); this only catches a stuck worker.
timeout = 30
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
    """Check the counts source, then start with no samples left from a previous run."""
    check_source(server)
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
    """Each worker drains the bump outbox on its own thread (after fork: no shared sockets) and,
    in attached mode, relays counts.bump() notifications on another."""
    resources = _resources(worker)
    if resources is not None and resources.drain_interval > 0:
        worker.counts_drainer = resources.start_drainer()
    if resources is not None and resources.source.relays_bumps:
        worker.counts_relay = resources.start_relay()


def worker_exit(server, worker):
    """Stop the drainer and the relay, and close pooled Postgres connections with the worker."""
    for name in ("counts_drainer", "counts_relay"):
        thread = getattr(worker, name, None)
        if thread is not None:
            thread.stop()
    resources = _resources(worker)
    if resources is not None:
        resources.close()
