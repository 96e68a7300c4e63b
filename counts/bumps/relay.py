"""The LISTEN relay: bumps that SQL writers record with counts.bump() reach Redis milliseconds
after their commit (COUNTS_SOURCE=attached).

A notification is only a wake-up; the outbox is the truth (as pub/sub is for the live feed).
Each worker runs one relay thread on a connection of its own, never lent to a request,
LISTENing on counts.bump()'s channel. Every wake-up drains the outbox on that same connection
(so a pool busy with requests never holds a bump up) through the drainer's own step
(counts.bumps.outbox.bump_batch: claim with FOR UPDATE SKIP LOCKED, bump in one Redis round trip,
forget), so the workers and instances that one commit wakes never bump a row twice.
Notifications sent while nobody listened are lost, so the relay drains once after every
(re)connection, before it waits. What it still misses (Redis down when it woke, a connection
that died silently) the periodic drainer bumps a few seconds later.

Works under gthread and gevent alike: it waits in select.select on the connection's socket
(gevent patches it), and touches Postgres only through counts.postgres.pool.
"""

import logging
import select
import threading

import psycopg2
import redis
from psycopg2.extensions import connection

from counts.bumps import outbox
from counts.markers import Wal
from counts.postgres.pool import Database
from counts.postgres.queries import bumps

log = logging.getLogger(__name__)

APPLICATION_NAME = "counts-relay"  # how its connection shows in pg_stat_activity
RETRY_SECONDS = (0.1, 1.0, 2.0, 5.0)  # waits before reconnecting, after 1, 2, 3, 4+ failures
IDLE_SECONDS = 1.0  # longest wait before looking at the stop flag again
BATCH_SIZE = 500  # outbox rows per transaction


class Relay(threading.Thread):
    """A daemon thread that LISTENs for counts.bump() and drains the outbox on every wake-up."""

    def __init__(self, db: Database, client: redis.Redis, ttl: int, wal: Wal = None):
        super().__init__(name="counts-relay", daemon=True)
        self.db, self.client, self.ttl, self.wal = db, client, ttl, wal
        self.stopped = threading.Event()
        self.listening = threading.Event()  # set while a LISTEN is in place

    def run(self) -> None:
        """Listen until stopped; reconnect after any failure, backing off while they repeat."""
        failures = 0
        while not self.stopped.is_set():
            try:
                self.listen()
            except (psycopg2.OperationalError, psycopg2.InterfaceError) as error:
                log.warning("relay lost Postgres, reconnecting: %s", str(error).strip())
            except Exception:  # a dead relay would leave every SQL write to the drainer
                log.exception("relay failed, restarting")
            failures = 1 if self.listening.is_set() else failures + 1
            self.listening.clear()
            self.stopped.wait(RETRY_SECONDS[min(failures, len(RETRY_SECONDS)) - 1])

    def listen(self) -> None:
        """One connection's life: LISTEN, catch up, then drain on every notification."""
        conn = self.db.dedicated(APPLICATION_NAME)
        try:
            with conn.cursor() as cur:
                bumps.listen_for_bumps(cur)
            self.listening.set()
            while not self.stopped.is_set():
                # First the catch-up: commits made while nobody listened notified nobody. Then
                # once per wake-up, however many commits woke us: one drain takes all their rows.
                self.drain(conn)
                # The drain's own statements may have read notifications off the socket already,
                # so look at what arrived before waiting for more; poll() after a quiet second
                # too, in case the client library holds one the socket no longer signals.
                while not conn.notifies and not self.stopped.is_set():
                    select.select([conn], [], [], IDLE_SECONDS)
                    conn.poll()  # reads notifications; raises if the server went away
                conn.notifies.clear()
        finally:
            conn.close()

    def drain(self, conn: connection) -> None:
        """Bump everything in the outbox now, on the relay's own connection: a busy pool must
        not hold a bump up. A Redis failure leaves the rows for the next wake-up or the drainer."""
        conn.autocommit = False
        try:
            while True:
                with conn.cursor() as cur:
                    rows, bumped, _ = outbox.bump_batch(cur, self.client, self.ttl, 0.0,
                                                        BATCH_SIZE, self.wal)
                conn.commit()
                if bumped:
                    log.debug("relay bumped %d users", bumped)
                if rows < BATCH_SIZE:
                    break
        except redis.RedisError as error:
            conn.rollback()
            log.info("relay waits for Redis: %s", error)
        conn.autocommit = True  # back to LISTENing between transactions

    def stop(self) -> None:
        """Ask the thread to finish (within IDLE_SECONDS)."""
        self.stopped.set()
