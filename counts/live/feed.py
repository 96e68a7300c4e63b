"""The change feed of one worker process: its Redis subscribers, and the requests waiting on them.

As in Discourse's message_bus: one subscriber connection per Redis server and process, and an
in-process map from user to waiters, never a Redis connection per waiter. A bump publishes each
user's new marker on the user's channel (counts.markers.scripts.BUMP_MARKERS), on the server holding the user;
the subscriber of that server (counts.live.subscribers: one for one server or Sentinel, one per
primary on a Cluster, with sharded pub/sub) holds a user's channel while at least one of the
worker's live connections waits on that user.

Pub/sub is at-most-once, so a message is only a wake-up (DESIGN.md invariant 10). Woken users are
re-read from Redis by the checker thread in batches (one marker script per server per round), and
only waiters whose marker really moved are woken. Every waiter is re-checked when Redis confirms its user's
subscription (a bump between the waiter's first read and its subscription is not lost) and after
its subscriber reconnects (Redis restarted, the socket cut, half-open: a PING unanswered, or a
Cluster primary failed over: its users then follow their slots to the promoted replica).
Streams ask for a re-check at each heartbeat and a long-poll re-reads its marker at its deadline,
so a lost message costs at most one heartbeat, never a stale client.
"""

import logging
import math
import os
import random
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable

import redis

from counts import markers
from counts.live.subscribers import Subscriber, describe
from counts.markers import presence, topology
from counts.observability import metrics

log = logging.getLogger(__name__)

BATCH = 1000  # users per re-read
PRESENCE_BATCH = 100  # users per presence write (one pipeline)
# Heartbeat re-checks wait up to this long to share one read: 8,000 streams at 15-s heartbeats
# asked ~530 a second, and one read each (a script call of 1-3 users) cost a fifth of the
# service's CPU and held wake-ups behind it. Never ahead of a wake-up's re-check.
ROUTINE_DELAY = 0.25
# A long-poll ends at a random moment in the last fifth of its wait: clients that polled together
# (the bench's 1,000 a second, or every client after a deploy) would all come back together,
# and 1,000 renewals in one second stalled the worker's writes for up to a second.
HOLD_JITTER = 0.2


class Waiter:
    """One live connection (a long-poll, an SSE or WebSocket stream) waiting on one user."""

    __slots__ = ("_event", "closing", "device", "fresh", "live", "marker", "retry_ms", "transport",
                 "user", "written_at")

    def __init__(self, user: str, marker: str | None, live: bool = False,
                 device: str | None = None):
        self.user = user
        self.marker = marker  # what the client holds; None when Redis could not say
        # A newer marker found by the checker, with the WAL position a replica needs for it.
        self.fresh: markers.MarkerRead | None = None
        self.closing = False  # the worker is shutting down: end now, suggesting retry_ms
        self.retry_ms = 0
        self.live = live  # a stream: it counts for presence (long-polls do not)
        self.transport = "live" if live else "long_poll"
        # When the write behind `fresh` committed (from the feed's message), until it is delivered.
        self.written_at: float | None = None
        self.device = device  # the push device the stream said it is on, if it said
        self._event = threading.Event()

    def wake(self) -> None:
        """Make wait() return now."""
        self._event.set()

    def wait(self, timeout: float) -> None:
        """Until woken or `timeout` seconds pass; then look at `fresh` and `closing`."""
        self._event.wait(max(0.0, timeout))
        self._event.clear()

    def take(self) -> markers.MarkerRead | None:
        """The newer marker, if one was found since the last take (and is not the one held)."""
        fresh, self.fresh = self.fresh, None
        if fresh is None or fresh.token == self.marker:
            self.written_at = None  # nothing new to deliver: a later change is timed afresh
            return None
        return fresh

    def delivered(self, transport: str) -> None:
        """The change `take` gave was written to the client: observe commit-to-frame latency."""
        if self.written_at is not None:
            metrics.LIVE_LATENCY.labels(transport).observe(max(0.0, time.time() - self.written_at))
            self.written_at = None


class Feed:
    """The worker's subscribers and waiters; threads (greenlets under gevent) start on first use."""

    def __init__(self, client: redis.Redis, marker_ttl: int, capacity: int,
                 heartbeat: float):
        self.redis = client
        self.marker_ttl = marker_ttl
        self.capacity = capacity
        self.heartbeat = heartbeat
        # A listen flag outlives one refresh missed (see _check); bumps publish while it holds.
        self.listen_seconds = math.ceil(2 * heartbeat) + 1
        self.count = 0  # waiters registered
        self.shutting_down = False
        self.worker_id = ""
        self._waiters: dict[str, set[Waiter]] = {}
        self._subscribers: dict[str | None, Subscriber] = {}  # by topology.feed_server
        self._held: dict[str, Subscriber] = {}  # user -> the subscriber holding their channel
        # (user, device or None) -> open streams here (presence)
        self._live: dict[presence.Present, int] = {}
        # presence changes to write: True open, False gone
        self._presence: dict[presence.Present, bool] = {}
        self._pending: set[str] = set()  # users to re-check now (woken, confirmed, failed)
        self._routine: set[str] = set()  # heartbeat re-checks, read together (ROUTINE_DELAY)
        self._routine_due = 0.0  # monotonic time the next routine read may start
        self._written: dict[str, float] = {}  # user -> earliest commit their feed messages carried
        self._lock = threading.Lock()
        self._work = threading.Event()
        self._stopped = threading.Event()
        self._pid = 0

    @property
    def full(self) -> bool:
        """Whether a new waiter would be refused (at capacity, or shutting down)."""
        return self.shutting_down or self.count >= self.capacity

    # --- waiters ---------------------------------------------------------------------------

    def add(self, waiter: Waiter) -> bool:
        """Register a waiter; False (not registered) when full or shutting down."""
        with self._lock:
            if self.full:
                return False
            self._start()
            self.count += 1
            waiters = self._waiters.setdefault(waiter.user, set())
            waiters.add(waiter)
            if len(waiters) == 1:
                # Its confirmation re-checks the user: a bump since the waiter's read is seen.
                self._subscribe(waiter.user)
            elif waiter.user in self._held[waiter.user].confirmed:
                self._pending.add(waiter.user)
                self._work.set()
            if waiter.live:
                present = (waiter.user, waiter.device)
                self._live[present] = self._live.get(present, 0) + 1
                if self._live[present] == 1:
                    self._presence[present] = True
                    self._work.set()
        metrics.LIVE_WAITERS.labels(waiter.transport).inc()
        return True

    def remove(self, waiter: Waiter) -> None:
        """Unregister a waiter (once; a second call does nothing)."""
        with self._lock:
            waiters = self._waiters.get(waiter.user)
            if waiters is None or waiter not in waiters:
                return
            waiters.discard(waiter)
            self.count -= 1
            if not waiters:
                del self._waiters[waiter.user]
                self._held.pop(waiter.user).drop(waiter.user)
            if waiter.live:
                present = (waiter.user, waiter.device)
                self._live[present] -= 1
                if not self._live[present]:
                    del self._live[present]
                    self._presence[present] = False
                    self._work.set()
        metrics.LIVE_WAITERS.labels(waiter.transport).dec()

    def recheck(self, user: str) -> None:
        """A heartbeat's re-check: re-read the user's marker within ROUTINE_DELAY (with the
        others asked meanwhile, after any wake-up's) and wake the waiters it moved for."""
        with self._lock:
            first = not self._routine
            self._routine.add(user)
        if first:  # the checker may be asleep for a heartbeat: let it time the routine read
            self._work.set()

    def hold(self, user: str, marker: str, seconds: float,
             still_current: Callable[[str], bool]) -> tuple[markers.MarkerRead, bool]:
        """A long-poll: wait up to `seconds` for the user's marker to leave those the client holds
        (`still_current`, first `marker`). (The marker now, whether the client lacks it.)

        At the end (the deadline, or shutdown) the marker is read once more (invariant 10); that
        read raises RedisError if Redis fails. The deadline is jittered (HOLD_JITTER): a client
        may be answered up to a fifth of `seconds` early, as RFC 7240's wait allows.
        """
        waiter = Waiter(user, marker)
        if self.add(waiter):
            deadline = time.monotonic() + seconds * (1 - HOLD_JITTER * random.random())
            try:
                while not waiter.closing and (left := deadline - time.monotonic()) > 0:
                    waiter.wait(left)
                    fresh = waiter.take()
                    if fresh is not None:
                        if not still_current(fresh.token):
                            waiter.delivered("long_poll")
                            return fresh, True
                        waiter.marker = fresh.token  # the client holds this one too (an ETag list)
                        waiter.written_at = None  # not delivered: the next change is timed afresh
            finally:
                self.remove(waiter)
        current = markers.read(self.redis, user, self.marker_ttl)
        return current, not still_current(current.token)

    # --- shutdown ----------------------------------------------------------------------------

    def shut_down(self, spread: float) -> None:
        """Refuse new waiters and end the current ones at random moments over `spread` seconds,
        each suggesting a different reconnect delay: a deploy is not a reconnect storm."""
        with self._lock:
            self.shutting_down = True
            waiters = [w for group in self._waiters.values() for w in group]
        rng = random.Random()
        moments = sorted(((rng.uniform(0, spread), w) for w in waiters), key=lambda pair: pair[0])

        def close_over_time() -> None:
            started = time.monotonic()
            for at, waiter in moments:
                time.sleep(max(0.0, started + at - time.monotonic()))
                waiter.retry_ms = int(1000 * rng.uniform(1, 1 + spread))
                waiter.closing = True
                waiter.wake()

        threading.Thread(target=close_over_time, name="counts-live-shutdown", daemon=True).start()

    def stop(self) -> None:
        """Stop the subscribers and checker (worker exit, tests): within a second."""
        self._stopped.set()
        self._work.set()

    # --- the subscribers ---------------------------------------------------------------------

    def _start(self) -> None:
        """Start the checker in this process (after fork), once. Under the lock."""
        if self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self.worker_id = f"{socket.gethostname()}:{self._pid}:{secrets.token_hex(4)}"
        self._subscribers, self._held = {}, {}  # a parent's threads did not survive the fork
        threading.Thread(target=self._check, name="counts-feed-check", daemon=True).start()
        threading.Thread(target=self._refresh, name="counts-feed-refresh", daemon=True).start()

    def _subscribe(self, user: str) -> None:
        """Hold the user's channel on the subscriber of the server that holds the user (made
        if it is the first of that server's users here). Under the lock."""
        server = topology.feed_server(self.redis, user)
        subscriber = self._subscribers.get(server)
        if subscriber is None:
            subscriber = self._subscribers[server] = Subscriber(self, server)
        self._held[user] = subscriber
        subscriber.hold(user)

    def subscribed(self, user: str) -> bool:
        """Whether Redis confirmed the subscription of a user some waiter waits on."""
        with self._lock:
            subscriber = self._held.get(str(user))
            return subscriber is not None and str(user) in subscriber.confirmed

    def _woken(self, users: Iterable[str], written_at: float | None = None) -> None:
        """A subscriber's call (under the lock): re-check these users, one of whose writes
        committed at `written_at` if the message said."""
        self._pending.update(users)
        if written_at is not None:
            for user in users:
                self._written[user] = min(written_at, self._written.get(user, written_at))
        self._work.set()

    def _reroute(self, subscriber: Subscriber) -> bool:
        """A subscriber's call before it reconnects: on a fresh map of which server holds whom,
        move its users that another server now holds (a Cluster failover) to that server's
        subscriber, whose confirmations re-check them; retire it if none are left (False)."""
        topology.refresh_feed_servers(self.redis)
        with self._lock:
            for user in list(subscriber.users):
                if topology.feed_server(self.redis, user) != subscriber.server:
                    subscriber.drop(user)
                    self._subscribe(user)
            return not self._retire(subscriber)

    def _retire(self, subscriber: Subscriber) -> bool:
        """A subscriber's call (under the lock): end it if it holds no user; whether it ended."""
        if subscriber.users:
            return False
        subscriber.retired = True
        if self._subscribers.get(subscriber.server) is subscriber:
            del self._subscribers[subscriber.server]
        return True

    # --- the checker -------------------------------------------------------------------------

    def _check(self) -> None:
        """Re-read pending users' markers in batches, wake the moved; write presence changes.
        Wake-ups first: at most one batch of routine re-checks runs between two looks at them."""
        while not self._stopped.is_set():
            self._work.wait(self._idle_seconds())
            self._work.clear()
            with self._lock:
                users = [u for u in self._pending if u in self._waiters]
                self._pending.clear()
                users += self._take_routine(set(users))
                written, self._written = self._written, {}
                changes, self._presence = self._presence, {}
            failed = [user for i in range(0, len(users), BATCH)
                      for user in self._recheck_batch(users[i:i + BATCH], written)]
            if failed:  # retried soon: a lost re-check would cost a heartbeat
                with self._lock:
                    self._pending.update(failed)
                self._stopped.wait(random.uniform(0.05, 0.25))
                self._work.set()
            self._write_presence(changes)

    def _idle_seconds(self) -> float:
        """How long the checker may sleep unless woken: until the routine read is due."""
        with self._lock:
            if not self._routine:
                return self.heartbeat
            return max(0.0, self._routine_due - time.monotonic())

    def _take_routine(self, taken: set[str]) -> list[str]:
        """Under the lock: up to a batch of the routine re-checks, if due (not those in `taken`);
        the rest stay, due at once, so that wake-ups queued meanwhile go before them."""
        now = time.monotonic()
        if not self._routine or now < self._routine_due:
            return []
        users: list[str] = []
        while self._routine and len(users) < BATCH:
            user = self._routine.pop()
            if user in self._waiters and user not in taken:
                users.append(user)
        if self._routine:
            self._work.set()
        else:
            self._routine_due = now + ROUTINE_DELAY
        return users

    def _refresh(self) -> None:
        """Every heartbeat: the listen flags of every user waited on here, and the presence of
        every user (and device) with a stream here. Its own thread (greenlet), apart from the
        checker: a wake-up's re-check never waits behind thousands of refreshes."""
        while not self._stopped.wait(self.heartbeat):
            with self._lock:
                listened, live = list(self._waiters), list(self._live)
            self._keep_listening(listened)
            self._write_presence(dict.fromkeys(live, True))

    def _recheck_batch(self, users: list[str], written: dict[str, float]) -> list[str]:
        """One read (per Redis server) for these users; wake each waiter whose marker moved. The
        users that could not be read (all of them if Redis failed; a Cluster node's if it did)."""
        try:
            tokens, lsns = markers.read_markers_and_lsns(self.redis, users, self.marker_ttl,
                                                         listen=self.listen_seconds)
        except redis.RedisError as error:
            log.warning("feed: re-check of %d users failed, retrying: %s", len(users),
                        describe(error))
            metrics.redis_failed("feed_recheck")
            self._keep_written(users, written)
            return users
        unread = [user for user in users if user not in tokens]
        self._keep_written(unread, written)
        with self._lock:
            for user, token in tokens.items():
                for waiter in self._waiters.get(user, ()):
                    if token != waiter.marker:
                        waiter.fresh = markers.MarkerRead(token, 0, lsns[user])
                        if waiter.written_at is None:
                            waiter.written_at = written.get(user)
                        waiter.wake()
        return unread

    def _keep_written(self, users: list[str], written: dict[str, float]) -> None:
        """Keep the commit times of users whose re-check failed, for the retry."""
        with self._lock:
            for user in users:
                if user in written:
                    self._written[user] = min(written[user], self._written.get(user, written[user]))

    def _keep_listening(self, users: list[str]) -> None:
        """Refresh the listen flags of the users waited on here; re-check those whose flag lapsed
        or was lost (the re-check sets it again as it reads their marker, so a bump that did not
        publish while it was missing is found)."""
        again = [user for i in range(0, len(users), BATCH)
                 for user in markers.keep_listening(self.redis, users[i:i + BATCH],
                                                    self.listen_seconds)]
        if again:
            with self._lock:
                self._pending.update(again)
            self._work.set()

    def _write_presence(self, changes: dict[presence.Present, bool]) -> None:
        """Write presence changes: opened (or still open) users' devices get two heartbeats more."""
        opened = [present for present, live in changes.items() if live]
        gone = [present for present, live in changes.items() if not live]
        try:
            # In slices, yielding between them: a pipeline's packing and parsing is CPU the gevent
            # loop cannot interrupt (4,000 users: 168 ms on this loaded 2-core box), and every
            # heartbeat refreshes every stream's user.
            for i in range(0, len(opened), PRESENCE_BATCH):
                presence.mark_live(self.redis, self.worker_id, opened[i:i + PRESENCE_BATCH],
                                   time.time() + 2 * self.heartbeat + 1)
                time.sleep(0)
            for i in range(0, len(gone), PRESENCE_BATCH):
                presence.unmark_live(self.redis, self.worker_id, gone[i:i + PRESENCE_BATCH])
                time.sleep(0)
        except redis.RedisError as error:
            log.info("feed: presence not written (it lapses by itself): %s", describe(error))
            with self._lock:
                for present, live in changes.items():
                    self._presence.setdefault(present, live)
