"""The push queue's state for operators: its depth, its oldest job's age, and the devices
registered (per platform: what a push's wake-ups per device are counted against)."""

import threading
import time
from collections.abc import Callable
from typing import Any

from prometheus_client.core import GaugeMetricFamily

from counts.errors import DependencyUnavailable
from counts.observability import metrics
from counts.postgres.pool import Database
from counts.postgres.queries import push as push_sql

QUEUE_STATS_SECONDS = 5.0  # how long one reading serves the scrapes and probes that follow it


class QueueStats:
    """The push queue's depth and oldest job, and the devices, each read at most once per
    QUEUE_STATS_SECONDS per process: a count(*) over push_jobs is cheap until a backlog is what
    is being watched."""

    def __init__(self, db: Database, ttl: float = QUEUE_STATS_SECONDS):
        self._db, self._ttl = db, ttl
        self._readings: dict[str, tuple[float, Any]] = {}  # query name -> (read at, value)
        self._lock = threading.Lock()

    def _read(self, name: str, query: Callable[..., Any]) -> Any:
        """A query's value, read again once the last reading is older than the ttl."""
        with self._lock:
            read_at, value = self._readings.get(name, (-float("inf"), None))
            if time.monotonic() - read_at >= self._ttl:
                value = self._db.read(query)
                self._readings[name] = (time.monotonic(), value)
            return value

    def get(self) -> tuple[int, float]:
        """(jobs queued, age of the oldest in seconds); DependencyUnavailable without Postgres."""
        return self._read("queue", push_sql.queue_stats)

    def devices(self) -> dict[str, int]:
        """Devices registered, by platform; DependencyUnavailable without Postgres."""
        return self._read("devices", push_sql.devices_by_platform)

    def families(self) -> list[GaugeMetricFamily]:
        """The gauges for one scrape; none while Postgres is unreachable."""
        try:
            return [*metrics.push_queue(*self.get()), metrics.push_devices(self.devices())]
        except DependencyUnavailable:
            return []


class QueueCollector:
    """The queue's gauges at each scrape of a Prometheus registry (the push worker's /metrics)."""

    def __init__(self, stats: QueueStats):
        self.stats = stats

    def collect(self) -> list[GaugeMetricFamily]:
        """Gauges for this scrape; none while Postgres is unreachable."""
        return self.stats.families()
