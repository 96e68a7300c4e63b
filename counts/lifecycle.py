"""What a gunicorn worker of counts does when it starts, between requests, and when it stops.

gunicorn.conf.py calls these from gunicorn's hooks; they live here so that the deploy file only
says how gunicorn runs. Per worker, after fork (threads and sockets never cross a fork): the
outbox drainer, in attached mode the LISTEN relay, the admin listener's identity, and at SIGTERM
the spread-out close of live connections. This module imports nothing heavy at the top: the
master loads it before the workers fork and gevent patches them.
"""

import contextlib
import socket
import threading
import time
import weakref
from typing import Any

from counts.live.collector import Collector

# Client sockets between two requests of a keep-alive connection. The gevent worker waits for
# every connection to end before it exits, idle ones included, so a balancer's pooled
# connection held every deploy for graceful_timeout and lost the access log to the SIGKILL.
_idle_sockets: "weakref.WeakSet[Any]" = weakref.WeakSet()


def _resources(worker: Any) -> Any:
    """The service's resources, or None (another app, such as the bench floor, or a failed boot)."""
    return getattr(getattr(worker, "wsgi", None), "extensions", {}).get("counts")


def worker_started(worker: Any) -> None:
    """Start the worker's drainer (and relay, attached), find its admin listener, and wait on a
    thread of its own for the stop, to close live connections over a few seconds."""
    resources = _resources(worker)
    if resources is None:
        return
    Collector().install()  # full collections walk only what is new (counts.live.collector)
    _find_admin_listener(worker, resources)
    if resources.settings.bumps.drain_interval > 0:
        worker.counts_drainer = resources.start_drainer()
    if resources.source.relays_bumps:
        worker.counts_relay = resources.start_relay()
    threading.Thread(target=_close_live_connections_at_exit, args=(worker, resources),
                     name="counts-live-exit", daemon=True).start()


def _find_admin_listener(worker: Any, resources: Any) -> None:
    """Tell the app which of the worker's listeners is COUNTS_ADMIN_BIND (counts.http.admin)."""
    from gunicorn.util import parse_address

    from counts.http.admin import listener_key

    admin_bind = resources.settings.server.admin_bind
    if admin_bind is None:
        return
    wanted = listener_key(parse_address(admin_bind))
    if any(listener_key(sock.getsockname()) == wanted for sock in worker.sockets):
        resources.admin_listener = wanted
        return
    worker.log.warning("COUNTS_ADMIN_BIND %s is not among the addresses gunicorn listens on: "
                       "no metrics are served", admin_bind)


def request_started(req: Any) -> None:
    """The connection is busy with a request: not idle."""
    _idle_sockets.discard(getattr(req.unreader, "sock", None))


def request_finished(worker: Any, environ: dict) -> None:
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


def _close_live_connections_at_exit(worker: Any, resources: Any) -> None:
    """Wait for the worker to be told to stop (SIGTERM: worker.alive turns False), then end its
    idle keep-alive connections at once (gthread does the same) and its live connections spread
    over COUNTS_STREAM_SHUTDOWN_SECONDS, within graceful_timeout."""
    while worker.alive:
        time.sleep(0.25)
    for sock in list(_idle_sockets):
        with contextlib.suppress(OSError):  # closed meanwhile
            sock.shutdown(socket.SHUT_RDWR)
    resources.feed.shut_down(resources.settings.live.shutdown_seconds)


def worker_stopping(worker: Any) -> None:
    """Stop the drainer and the relay, and close pooled connections with the worker."""
    for name in ("counts_drainer", "counts_relay"):
        thread = getattr(worker, name, None)
        if thread is not None:
            thread.stop()
    resources = _resources(worker)
    if resources is not None:
        resources.close()
