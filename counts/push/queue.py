"""The push queue's state for operators: its depth and its oldest job's age."""

import threading
import time

from prometheus_client.core import GaugeMetricFamily

from counts.errors import DependencyUnavailable
from counts.observability import metrics
from counts.postgres.pool import Database
from counts.postgres.queries import push as push_sql

QUEUE_STATS_SECONDS = 5.0  # how long one reading serves the scrapes and probes that follow it


class QueueStats:
    """The push queue's depth and oldest job, read at most once per QUEUE_STATS_SECONDS per
    process: a count(*) over push_jobs is cheap until a backlog is what is being watched."""

    def __init__(self, db: Database, ttl: float = QUEUE_STATS_SECONDS):
        self._db, self._ttl = db, ttl
        self._value: tuple[int, float] | None = None
        self._read_at = -float("inf")
        self._lock = threading.Lock()

    def get(self) -> tuple[int, float]:
        """(jobs queued, age of the oldest in seconds); DependencyUnavailable without Postgres."""
        with self._lock:
            if self._value is None or time.monotonic() - self._read_at >= self._ttl:
                self._value, self._read_at = self._db.read(push_sql.queue_stats), time.monotonic()
            return self._value


class QueueCollector:
    """The queue's gauges at each scrape of a Prometheus registry (the push worker's /metrics)."""

    def __init__(self, stats: QueueStats):
        self.stats = stats

    def collect(self) -> list[GaugeMetricFamily]:
        """Gauges for this scrape; none while Postgres is unreachable."""
        try:
            return metrics.push_queue(*self.stats.get())
        except DependencyUnavailable:
            return []
