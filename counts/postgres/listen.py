"""One LISTEN loop, for whoever waits on a Postgres NOTIFY channel: attached mode's relay (bumps
SQL writers recorded) and the push dispatcher (jobs the writes queued).

A notification is only a wake-up; the truth is in the tables. So the listener acts once after
every (re)connection (commits made while nobody listened notified nobody), once per wake-up
however many notifications woke it, and again whenever its last act asked to be called back
within a time (a job due, a poll interval). It listens on a connection of its own, never lent
to a request. Postgres going away costs a reconnect after a jittered backoff that grows while
the failures repeat; stop() ends the loop at once, even from a signal handler.
"""

import logging
import os
import random
import select
import threading
import time
from collections.abc import Callable

import psycopg2
from psycopg2.extensions import connection

from counts.errors import DependencyUnavailable
from counts.postgres.pool import Database
from counts.postgres.queries import session

log = logging.getLogger(__name__)

RETRY_BASE, RETRY_MAX = 0.1, 5.0  # seconds before reconnecting: full jitter, doubling, capped
QUIET_SLICE = 1.0  # poll() at least this often: a notification the library holds shows then
LOST = (psycopg2.OperationalError, psycopg2.InterfaceError, DependencyUnavailable)

# What a listener does when woken: given the listening connection (the relay drains on it), it
# returns how many seconds may pass before it must act again without a wake-up (0: at once).
Act = Callable[[connection], float]


class Listener:
    """LISTENs on `channel` for `name`, calling `act` as the module says, until stopped."""

    def __init__(self, db: Database, channel: str, act: Act, name: str):
        self.db, self.channel, self.act, self.name = db, channel, act, name
        self.stopped = threading.Event()
        self.listening = threading.Event()  # set while a LISTEN is in place
        self._wake_read, self._wake_write = os.pipe()  # stop() interrupts a wait at once

    def run(self) -> None:
        """Listen until stopped; reconnect after any failure, backing off while they repeat."""
        failures = 0
        while not self.stopped.is_set():
            try:
                self._listen_once()
            except LOST as error:
                log.warning("%s lost Postgres, reconnecting: %s", self.name, str(error).strip())
            except Exception:  # a dead listener would leave its work to the periodic fallbacks
                log.exception("%s failed, restarting", self.name)
            failures = 1 if self.listening.is_set() else failures + 1
            self.listening.clear()
            self.stopped.wait(random.uniform(0, min(RETRY_MAX, RETRY_BASE * 2 ** (failures - 1))))

    def _listen_once(self) -> None:
        """One connection's life: LISTEN, act at once (the catch-up), then on every wake-up."""
        conn = self.db.dedicated(self.name)
        try:
            with conn.cursor() as cur:
                session.listen(cur, self.channel)
            self.listening.set()
            while not self.stopped.is_set():
                again_in = self.act(conn)
                if again_in > 0 and not self.stopped.is_set():
                    self._wait(conn, again_in)
        finally:
            conn.close()

    def _wait(self, conn: connection, seconds: float) -> None:
        """Until a notification, stop(), or `seconds` pass; poll() every quiet second too."""
        deadline = time.monotonic() + seconds
        # The act's own statements may have read notifications off the socket already.
        while not conn.notifies and (left := deadline - time.monotonic()) > 0:
            ready = select.select([conn.fileno(), self._wake_read], [], [], min(left, QUIET_SLICE))[0]
            if self._wake_read in ready:
                os.read(self._wake_read, 512)
                if self.stopped.is_set():
                    return
            conn.poll()  # reads notifications; raises if the server went away
        conn.notifies.clear()

    def stop(self) -> None:
        """End the loop after the act in flight. Safe from a signal handler."""
        self.stopped.set()
        os.write(self._wake_write, b"x")

    def close(self) -> None:
        """Release the wake-up pipe (after run() returned)."""
        os.close(self._wake_read)
        os.close(self._wake_write)
