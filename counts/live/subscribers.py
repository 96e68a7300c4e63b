"""One subscriber connection of the change feed: the feed channels of the users one Redis server
holds (counts.markers.topology.feed_server), with its own thread.

On one server or Sentinel it SUBSCRIBEs; on a Cluster it SSUBSCRIBEs at the primary owning its
users' slots (sharded pub/sub: a bump SPUBLISHes where the user's marker lives). It reconnects
with jittered backoff whenever its connection fails: Redis restarted, the socket cut, half-open
(a PING unanswered), or on a Cluster its node died or gave up a slot (MOVED, or a SUNSUBSCRIBE
Redis sent by itself). Before each reconnect the feed re-routes its users on a fresh slot map, so
the users of a failed-over primary move to the subscriber of the promoted replica. After each
(re)connect, the PONG that follows its subscriptions has the feed re-check all its users.

Only the subscriber's thread touches its connection, and never under the feed's lock: a socket
that stalls (a full send buffer, a frozen peer) may hold the thread up to the socket timeout,
but never a waiter's registration, the checker or another subscriber, which all take that lock.
So the feed's `hold` and `drop` only queue their (UN)SUBSCRIBE, under the lock, and wake the
thread through a socket pair it polls together with its Redis socket (gevent patches poll); the
thread writes the queue in order. A write that fails makes it start over, as a failed read does.

The subscriber shares the feed's lock and calls back three of its methods, under that lock:
`_woken(users)` (re-check them), `_reroute(subscriber)` (without the lock: it refreshes the slot
map) and `_retire(subscriber)` (it has no users left).
"""

import contextlib
import itertools
import logging
import operator
import random
import select
import socket
import threading
import time
from typing import Any

import redis

from counts.markers import keys, topology
from counts.observability import metrics

log = logging.getLogger(__name__)

PING_EVERY = 5.0  # seconds between a subscriber's PINGs
PONG_TIMEOUT = 5.0  # a PING unanswered this long means a dead or half-open socket: reconnect
READ_SLICE = 1.0  # seconds a subscriber blocks on its socket per turn
BATCH = 1000  # channels per SUBSCRIBE
RECONNECT_MIN = 0.05  # seconds: the first reconnect waits up to this (full jitter), doubling...
RECONNECT_MAX = 2.0  # ... up to this

# Replies as their kind: sharded pub/sub names them with an "s".
KINDS = {b"message": "message", b"subscribe": "subscribe", b"unsubscribe": "unsubscribe",
         b"smessage": "message", b"ssubscribe": "subscribe", b"sunsubscribe": "unsubscribe"}


def written_at(message: bytes) -> float | None:
    """When the bumped write committed, as its feed message says (after "@"); None if unknown."""
    try:
        return float(message.rpartition(b"@")[2]) if b"@" in message else None
    except ValueError:
        return None


def describe(error: Exception) -> str:
    """An error for a log line (redis-py 8's repr hides the message: 'network:ConnectionError')."""
    return f"{type(error).__name__}: {error}"


class Subscriber:
    """The feed channels of the users one server holds, on one connection."""

    def __init__(self, feed: Any, server: str | None):
        self.feed = feed
        self.server = server  # topology.feed_server's key: None (one server) or "host:port"
        self.users: set[str] = set()  # whose channels this connection must hold
        self.confirmed: set[str] = set()  # whose subscription the server confirmed
        self.retired = False  # no users left, or moved elsewhere: the thread ends
        self._lock = feed._lock
        self._conn: redis.Connection | None = None
        self._sharded = False
        self._resubscribing = False  # between a (re)connect's SUBSCRIBEs and its PONG
        self._queue: list[tuple[str, str]] = []  # (verb, user) for the thread to write, in order
        self._delay = RECONNECT_MIN
        # Written (one byte a batch) to wake the thread when the feed queues a command.
        self._wake_read, self._wake_write = socket.socketpair()
        for end in (self._wake_read, self._wake_write):
            end.setblocking(False)
        threading.Thread(target=self._run, name=f"counts-feed-{server or 'redis'}",
                         daemon=True).start()

    # --- called by the feed, under its lock ---------------------------------------------------

    def hold(self, user: str) -> None:
        """Subscribe to the user's channel (its confirmation has the user re-checked)."""
        self.users.add(user)
        self._enqueue("subscribe", user)

    def drop(self, user: str) -> None:
        """Unsubscribe from the user's channel."""
        self.users.discard(user)
        self.confirmed.discard(user)
        self._enqueue("unsubscribe", user)

    def _enqueue(self, verb: str, user: str) -> None:
        """Queue a command for the thread and wake it, without blocking (under the lock)."""
        if self._conn is None:
            return  # down: the reconnect subscribes every user held
        self._queue.append((verb, user))
        if len(self._queue) == 1:  # the thread takes the queue after draining its wake-ups
            with contextlib.suppress(OSError):  # the pair is closed: the thread has ended
                self._wake_write.send(b"\0")

    # --- its thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        """Hold the connection, reconnecting with jittered backoff, until retired or stopped."""
        try:
            self._connect_until_done()
        finally:
            self._wake_read.close()
            self._wake_write.close()

    def _connect_until_done(self) -> None:
        """(Re)connect and listen, with jittered backoff between tries, until retired or stopped."""
        stopped = self.feed._stopped
        while not stopped.is_set():
            conn: redis.Connection | None = None
            try:
                conn, sharded = topology.feed_connection(self.feed.redis, self.server)
                conn.connect()
                with self._lock:
                    if self.retired:
                        return
                    # Everyone, then the PING whose PONG has them re-checked; what the feed
                    # queues from now on is written after them.
                    self._conn, self._sharded, self._resubscribing = conn, sharded, True
                    self._queue = [("subscribe", user) for user in self.users]
                self._flush()
                conn.send_command("PING", check_health=False)
                self._listen(conn)
            except Exception as error:  # noqa: BLE001 - a broken socket surfaces as whatever
                # redis-py or its parser trips on (not only RedisError); any failure: reconnect.
                if not stopped.is_set():
                    log.warning("feed: subscriber of %s lost Redis, reconnecting: %s",
                                self.server or "redis", describe(error))
                    metrics.redis_failed("feed")
            finally:
                with self._lock:
                    if self._conn is conn:
                        self._conn = None
                    self.confirmed.clear()
                    self._queue.clear()  # the reconnect subscribes every user held
                if conn is not None:
                    conn.disconnect()
            if self.retired or stopped.wait(random.uniform(0, self._delay)):
                return
            self._delay = min(RECONNECT_MAX, self._delay * 2)
            if not self.feed._reroute(self):  # a Cluster's slots may have moved: users follow them
                return  # none left here

    def _flush(self) -> None:
        """Write the queued commands, in order, outside the lock; a write that fails raises."""
        # Raises, never swallowed: redis-py has then closed the socket, and reading on would open
        # a new one by itself, subscribed to nothing. The thread starts over instead.
        with self._lock:
            queued, self._queue = self._queue, []
        for verb, run in itertools.groupby(queued, key=operator.itemgetter(0)):
            self._send(verb, [user for _, user in run])

    def _send(self, verb: str, users: list[str]) -> None:
        """(UN)SUBSCRIBE, or their sharded forms, for these users, in one write."""
        verb = ("S" if self._sharded else "") + verb.upper()
        # A sharded command names channels of one slot: there, one command per user.
        channels = [keys.feed_channel(user) for user in users]
        commands = [(verb, channel) for channel in channels] if self._sharded else \
            [(verb, *channels[i:i + BATCH]) for i in range(0, len(channels), BATCH)]
        conn = self._conn
        if conn is None:
            raise redis.ConnectionError("the subscriber's connection is gone")
        conn.send_packed_command(conn.pack_commands(commands), check_health=False)

    def _readable(self, conn: redis.Connection) -> bool:
        """Whether a reply waits; False after READ_SLICE, or as soon as the feed queues."""
        if conn.can_read(timeout=0):  # replies hiredis or TLS already buffered included
            return True
        sock: socket.socket | None = conn._sock  # redis-py's socket: no public accessor
        if sock is None:
            raise redis.ConnectionError("the subscriber's connection is closed")
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        poller.register(self._wake_read, select.POLLIN)
        ready = {fd for fd, _ in poller.poll(READ_SLICE * 1000)}
        if self._wake_read.fileno() in ready:
            with contextlib.suppress(BlockingIOError):  # drained before _flush takes the queue
                while self._wake_read.recv(4096):
                    pass
        return sock.fileno() in ready and conn.can_read(timeout=0)

    def _listen(self, conn: redis.Connection) -> None:
        """Write what is queued and read replies until the connection fails (raises), or ends."""
        last_ping = time.monotonic()
        ping_sent: float | None = last_ping  # the PING after the SUBSCRIBEs
        while not self.feed._stopped.is_set():
            self._flush()
            if self._readable(conn):
                # hiredis marks pub/sub replies as push messages: ask for them, or they vanish.
                # A MOVED (a slot this node gave up) raises here: reconnect, re-routed.
                reply = conn.read_response(push_request=True)
                if reply == b"PONG" or (isinstance(reply, list) and reply[0] == b"pong"):
                    ping_sent = None
                    self._answered()
                else:
                    self._handle(reply)
            now = time.monotonic()
            if ping_sent is not None and now - ping_sent > PONG_TIMEOUT:
                raise redis.ConnectionError("the subscriber's PING went unanswered")
            if ping_sent is None and now - last_ping >= PING_EVERY:
                with self._lock:
                    if not self.users and self.feed._retire(self):
                        return  # no waiter waits on a user of this server any more
                conn.send_command("PING", check_health=False)
                ping_sent = last_ping = now

    def _answered(self) -> None:
        """A PONG: after a (re)connect, every subscription before it is active, so every user
        is re-checked (their bumps may have been published while nobody listened)."""
        with self._lock:
            if not self._resubscribing:
                return
            self._resubscribing = False
            self._delay = RECONNECT_MIN
            self.feed._woken(self.users)
        metrics.FEED_RESUBSCRIBED.inc()

    def _handle(self, reply: list) -> None:
        """A published marker, or a (un)subscribe confirmation."""
        kind, user = KINDS.get(reply[0]), keys.channel_user(reply[1])
        with self._lock:
            if kind == "message" and user in self.users:
                self.feed._woken([user], written_at(reply[2]))
            elif kind == "subscribe" and user in self.users:
                self.confirmed.add(user)
                if not self._resubscribing:
                    self.feed._woken([user])
            elif kind == "unsubscribe" and user in self.users:
                # Ours, raced by a new waiter's subscribe (whose confirmation follows), or the
                # server's own: its slot moved. Subscribing again is harmless in the first case
                # and answered MOVED in the second, which has this subscriber re-routed.
                self.confirmed.discard(user)
                self._enqueue("subscribe", user)
