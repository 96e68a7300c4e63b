"""WebSocket: a user's counts as text frames `{"etag": "<ETag>", "counts": {...}}`.

The protocol is wsproto's (sans-I/O); the socket is gunicorn's, taken over after the handshake.
One greenlet serves a socket: it waits on the feed's waiter, which the gevent hub also wakes when
the socket has bytes to read (pongs, pings, close). Per-message compression is never accepted:
it cost ~50 KiB a socket for frames of a few hundred bytes. Pings every COUNTS_WS_PING_INTERVAL
seconds; a ping unanswered by the next one ends the connection. A client's text frame `ping` is
answered with a text frame `pong`: browsers and React Native cannot see protocol pings, and this is
how their clients find a half-open socket (after sleep, on every foreground).

Close codes: 1000 when the client closes, 1008 when the token behind the stream expired, 1012
(service restart) when the worker shuts down, with a reconnect delay in the reason.
"""

import json
import logging
import re
import time
from collections.abc import Callable, Iterable

from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Ping, Pong, Request, TextMessage
from wsproto.utilities import ProtocolError

from counts import metrics
from counts.errors import Problem
from counts.live.stream import Subscription, Update, open_subscription, query_value
from counts.observe import ROUTE_KEY

log = logging.getLogger(__name__)

POLICY_VIOLATION, SERVICE_RESTART = 1008, 1012
WS_PATH = re.compile(r"/v1/users/([^/]+)/unread-counts/ws")
WS_ROUTE = "/v1/users/<user_id>/unread-counts/ws"
# Where a refused upgrade leaves its Problem for the Flask view to render as problem+json.
PROBLEM_KEY = "counts.websocket_problem"


class WebSockets:
    """WSGI middleware serving the WebSocket URL outside Flask: a session holds its greenlet for
    hours, and inside Flask's request it also held the request context (about 10 KiB more per
    socket). Anything refused goes on to Flask, which answers with the problem."""

    def __init__(self, app: Callable, resources):
        self.app = app
        self.resources = resources

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("HTTP_UPGRADE", "").lower() == "websocket" and supported(environ):
            found = WS_PATH.fullmatch(environ.get("PATH_INFO", ""))
            if found is not None and environ["REQUEST_METHOD"] == "GET":
                environ[ROUTE_KEY] = WS_ROUTE
                self.serve(environ, start_response, found.group(1))  # or falls through
        return self.app(environ, start_response)

    def serve(self, environ: dict, start_response: Callable, user_id: str) -> None:
        """Open and serve one WebSocket (raising StopIteration, which tells gunicorn to close
        the connection with nothing more written); return if refused, its problem noted."""
        res = self.resources
        try:
            try:
                connection = handshake(environ)
            except ProtocolError as error:
                raise Problem(f"Not a valid WebSocket upgrade: {error}.") from None
            sub, first = open_subscription(res, environ, user_id, query_value(environ, "etag"))
        except Problem as problem:
            environ[PROBLEM_KEY] = problem
            return
        start_response("101 Switching Protocols", [])  # for the access log; never written
        session = Session(connection, environ["gunicorn.socket"], sub, res.ws_ping_interval,
                          res.stream_heartbeat)
        with res.load.waiting():
            session.run(first)
        raise StopIteration


def supported(environ: dict) -> bool:
    """Whether this server can hand the socket over: gunicorn's gevent worker."""
    if "gunicorn.socket" not in environ:
        return False
    from gevent import monkey

    return monkey.is_module_patched("socket")


def frame(update: Update) -> str:
    """One counts frame."""
    return f'{{"etag": {json.dumps(update.etag)}, "counts": {update.body}}}'


def handshake(environ: dict) -> WSConnection:
    """Parse the upgrade request; raises wsproto's ProtocolError if it is not a valid one."""
    connection = WSConnection(ConnectionType.SERVER)
    headers = [(key[5:].replace("_", "-").lower(), value) for key, value in environ.items()
               if key.startswith("HTTP_")]
    target = environ.get("RAW_URI") or environ.get("PATH_INFO", "/")
    connection.initiate_upgrade_connection(headers, target)
    if not isinstance(next(connection.events(), None), Request):
        raise ProtocolError("not a WebSocket upgrade request")
    return connection


class Session:
    """One WebSocket on a hijacked socket, fed by a Subscription."""

    def __init__(self, connection: WSConnection, sock, sub: Subscription, ping_interval: float,
                 heartbeat: float):
        self.connection, self.sock, self.sub = connection, sock, sub
        self.ping_interval, self.heartbeat = ping_interval, heartbeat
        self.readable = False  # the hub saw bytes (or EOF) to read
        self.ponged = False  # a pong arrived since the last ping

    def run(self, first: Update | None) -> None:
        """Accept, send, and serve until the client leaves, the token expires or we stop."""
        from gevent import get_hub

        watcher = get_hub().loop.io(self.sock.fileno(), 1)  # 1: readable
        watcher.start(self._on_readable)
        try:
            self._send(AcceptConnection(extensions=[]))  # no permessage-deflate, whatever offered
            # From here on the protocol alone: the handshake (and its h11 parser) is let go.
            self.connection = self.connection.connection
            if first is not None:
                self._send_counts(first)
            self._serve()
        except (OSError, ProtocolError) as error:
            log.debug("websocket ended: %r", error)
        finally:
            watcher.stop()
            watcher.close()
            self.sub.close()

    def _serve(self) -> None:
        """The loop: counts on change, a re-check each heartbeat, pings, the client's frames."""
        now = time.monotonic()
        next_beat, next_ping, ping_unanswered = now + self.heartbeat, now + self.ping_interval, False
        while True:
            self.sub.wait(min(next_beat, next_ping) - time.monotonic())
            if self.sub.closing:
                self._close(SERVICE_RESTART, f"retry in {self.sub.waiter.retry_ms} ms")
                return
            if self.sub.expired:
                self._close(POLICY_VIOLATION, "token expired")
                return
            if self.readable and not self._read():
                return
            update = self.sub.change()
            if update is not None:
                self._send_counts(update)
            now = time.monotonic()
            if now >= next_beat:
                next_beat = now + self.heartbeat
                self.sub.heartbeat()
            if self.ponged:
                ping_unanswered = self.ponged = False
            if now >= next_ping:
                if ping_unanswered:
                    return  # a dead peer: the previous ping got no pong
                next_ping, ping_unanswered = now + self.ping_interval, True
                self._send(Ping())

    def _on_readable(self) -> None:
        """gevent hub callback: the socket has bytes (or EOF)."""
        if not self.readable:
            self.readable = True
            self.sub.waiter.wake()

    def _read(self) -> bool:
        """Take what the client sent; False once the connection is over."""
        self.readable = False
        data = self.sock.recv(4096)
        if not data:
            return False
        self.connection.receive_data(data)
        for event in self.connection.events():
            if isinstance(event, CloseConnection):
                self._send(event.response())
                return False
            if isinstance(event, Ping):
                self._send(event.response())
            elif isinstance(event, Pong):
                self.ponged = True
            elif isinstance(event, TextMessage) and event.message_finished and event.data == "ping":
                self._send(TextMessage("pong"))
        return True

    def _send_counts(self, update: Update) -> None:
        """One counts frame."""
        metrics.LIVE_EVENTS.labels("ws").inc()
        self._send(TextMessage(frame(update)))

    def _close(self, code: int, reason: str) -> None:
        """Start the closing handshake (the client's answer is not waited for)."""
        self._send(CloseConnection(code, reason))

    def _send(self, event) -> None:
        """Write one event's bytes."""
        self.sock.sendall(self.connection.send(event))
