"""Each worker's outbox drainer: what a writer could not bump (Redis down, the writer killed
between its commit and its bump) is bumped within a few seconds of Redis answering again."""

import logging
import threading

import redis

from counts.bumps.outbox import drain
from counts.errors import DependencyUnavailable
from counts.markers import Wal
from counts.postgres.pool import Database

log = logging.getLogger(__name__)


class Drainer(threading.Thread):
    """A daemon thread that drains the outbox every `interval` seconds until stopped."""

    def __init__(self, db: Database, client: redis.Redis, ttl: int, interval: float,
                 wal: Wal = None):
        super().__init__(name="counts-outbox-drainer", daemon=True)
        self.db, self.client, self.ttl, self.interval = db, client, ttl, interval
        self.wal = wal
        self.stopped = threading.Event()

    def run(self) -> None:
        """Drain, wait, repeat; an unreachable Postgres or Redis only delays the next try."""
        while not self.stopped.wait(self.interval):
            try:
                bumped = drain(self.db, self.client, self.ttl, min_age_seconds=self.interval,
                               wal=self.wal)
            except DependencyUnavailable:
                continue
            if bumped:
                log.info("outbox drain bumped %d users", bumped)

    def stop(self) -> None:
        """Ask the thread to finish after its current drain."""
        self.stopped.set()
