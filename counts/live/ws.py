"""WebSocket: a user's counts as text frames `{"etag": "<ETag>", "counts": {...}}`.

The protocol is wsproto's (sans-I/O); the socket is gunicorn's, taken over after the handshake
(counts.http.middleware.websocket).
One greenlet serves a socket: it waits on the feed's waiter, which the gevent hub also wakes when
the socket has bytes to read (pongs, pings, close). Per-message compression is never accepted:
it cost ~50 KiB a socket for frames of a few hundred bytes. Pings every COUNTS_WS_PING_INTERVAL
seconds; a ping unanswered by the next one ends the connection. A client's text frame `ping` is
answered with a text frame `pong`: browsers and React Native cannot see protocol pings, and this is
how their clients find a half-open socket (after sleep, on every foreground).

Close codes: 1000 when the client closes, 1008 when the token behind the stream expired or its
signing key was withdrawn, 1012 (service restart) when the worker shuts down, with a reconnect
delay in the reason.
"""

import json
import logging
import socket
import time

from wsproto import WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Event, Ping, Pong, TextMessage
from wsproto.utilities import ProtocolError

from counts.live.stream import Subscription, Update
from counts.observability import metrics

log = logging.getLogger(__name__)

POLICY_VIOLATION, SERVICE_RESTART = 1008, 1012
WAKEUPS = metrics.WAKEUPS.labels("live")


def frame(update: Update) -> str:
    """One counts frame."""
    return f'{{"etag": {json.dumps(update.etag)}, "counts": {update.body}}}'


class Session:
    """One WebSocket on a hijacked socket, fed by a Subscription."""

    __slots__ = ("connection", "first", "heartbeat", "ping_interval", "ponged", "readable", "sock",
                 "sub")

    def __init__(self, connection: WSConnection, sock: socket.socket, sub: Subscription,
                 ping_interval: float, heartbeat: float, first: Update | None = None):
        self.connection, self.sock, self.sub = connection, sock, sub
        self.first = first  # the counts to send once accepted (then let go)
        self.ping_interval, self.heartbeat = ping_interval, heartbeat
        self.readable = False  # the hub saw bytes (or EOF) to read
        self.ponged = False  # a pong arrived since the last ping

    def run(self) -> None:
        """Accept, send, and serve until the client leaves, the token expires or we stop."""
        from gevent import get_hub

        watcher = get_hub().loop.io(self.sock.fileno(), 1)  # 1: readable
        watcher.start(self._on_readable)
        metrics.DEVICE_REQUESTS.labels("live").inc()
        try:
            self._send(AcceptConnection(extensions=[]))  # no permessage-deflate, whatever offered
            # From here on the protocol alone: the handshake (and its h11 parser) is let go.
            self.connection = self.connection.connection  # type: ignore[assignment]
            first, self.first = self.first, None
            if first is not None:
                self._send_counts(first)
            del first
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
            if not self.sub.trusted:
                self._close(POLICY_VIOLATION, "token expired" if self.sub.expires_at <= time.time()
                            else "token's signing key withdrawn")
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
        self.sub.waiter.delivered("ws")

    def _close(self, code: int, reason: str) -> None:
        """Start the closing handshake (the client's answer is not waited for)."""
        self._send(CloseConnection(code, reason))

    def _send(self, event: Event) -> None:
        """Write one event's bytes (each wakes the device's radio: pings and pongs too)."""
        WAKEUPS.inc()
        self.sock.sendall(self.connection.send(event))
