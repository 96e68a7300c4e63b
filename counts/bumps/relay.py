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

It listens through counts.postgres.listen (one LISTEN loop for the relay and the dispatcher),
under gthread and gevent alike: it waits in select.select (gevent patches it).
"""

import logging
import math
import threading

import redis
from psycopg2.extensions import connection

from counts.bumps import outbox
from counts.markers import Wal
from counts.postgres.listen import Listener
from counts.postgres.pool import Database
from counts.postgres.queries import bumps

log = logging.getLogger(__name__)

APPLICATION_NAME = "counts-relay"  # how its connection shows in pg_stat_activity
BATCH_SIZE = 500  # outbox rows per transaction


class Relay(threading.Thread):
    """A daemon thread that LISTENs for counts.bump() and drains the outbox on every wake-up."""

    def __init__(self, db: Database, client: redis.Redis, ttl: int, wal: Wal = None):
        super().__init__(name="counts-relay", daemon=True)
        self.db, self.client, self.ttl, self.wal = db, client, ttl, wal
        self.listener = Listener(db, bumps.BUMPS_CHANNEL, self.act, APPLICATION_NAME)
        self.listening = self.listener.listening  # set while a LISTEN is in place

    def run(self) -> None:
        """Listen (and drain) until stopped, through Postgres outages."""
        try:
            self.listener.run()
        finally:
            self.listener.close()

    def act(self, conn: connection) -> float:
        """Drain, then wait for the next wake-up however long it takes."""
        self.drain(conn)
        return math.inf

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
        """Ask the thread to finish (at once, or after the drain in flight)."""
        self.listener.stop()
