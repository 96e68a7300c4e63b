"""gunicorn settings for counts (`gunicorn -c gunicorn.conf.py wsgi:app`); env vars override."""

import os

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
accesslog = "-" if os.environ.get("COUNTS_ACCESS_LOG") else None
errorlog = "-"
loglevel = os.environ.get("COUNTS_LOG_LEVEL", "info")


def _resources(worker):
    """The service's resources, or None when this config serves another app (bench's floor)."""
    return getattr(worker.wsgi, "extensions", {}).get("counts")


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
