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
    """Start with no samples left from a previous run in the metrics directory."""
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory, exist_ok=True)


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
    """Each worker drains the bump outbox on its own thread (after fork: no shared sockets)."""
    resources = _resources(worker)
    if resources is not None and resources.drain_interval > 0:
        worker.counts_drainer = resources.start_drainer()


def worker_exit(server, worker):
    """Stop the drainer and close pooled Postgres connections with the worker."""
    drainer = getattr(worker, "counts_drainer", None)
    if drainer is not None:
        drainer.stop()
    resources = _resources(worker)
    if resources is not None:
        resources.close()
