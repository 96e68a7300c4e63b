"""How busy this worker is, and the poll interval that follows from it.

When a worker's threads stay saturated, the service asks clients to poll less often (as GitHub
does with X-Poll-Interval) instead of letting every client's latency grow.

Under the gevent worker there are no threads to run out of, but the meaning carries over: a
request in flight is one the worker is answering, and while `threads` of them are in flight on
average at each arrival, the worker's CPU is the queue (at 8, a single core is ~86 % busy).
Live connections waiting for a change (long-polls, SSE, WebSocket) cost no CPU while they wait,
so they step out of the count for as long as they wait (`waiting`).
"""

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class LoadGauge:
    """A moving average of this process's in-flight requests, and the poll interval it implies."""

    def __init__(self, threads: int, base_interval: int, busy_factor: int = 2,
                 busy_fraction: float = 0.8, smoothing: float = 0.05):
        self.threads = threads
        self.base_interval = str(base_interval)
        self.busy_interval = str(base_interval * busy_factor)
        self.busy_level = threads * busy_fraction
        self.smoothing = smoothing
        self.in_flight = 0
        self.average = 0.0
        self._lock = threading.Lock()

    def started(self) -> None:
        """A request entered the app."""
        with self._lock:
            self.in_flight += 1
            # Sampled at arrivals: under saturation most arrivals find every thread busy.
            self.average += (self.in_flight - self.average) * self.smoothing

    def finished(self) -> None:
        """A request left the app."""
        with self._lock:
            self.in_flight -= 1

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """A request that stops working and waits (for a change): it is not busy meanwhile."""
        with self._lock:
            self.in_flight -= 1
        try:
            yield
        finally:
            with self._lock:
                self.in_flight += 1

    @property
    def saturated(self) -> bool:
        """Whether this worker's threads have been nearly all busy lately."""
        return self.average >= self.busy_level

    def poll_interval(self) -> str:
        """Seconds clients should wait between polls: longer while this worker is saturated."""
        return self.busy_interval if self.saturated else self.base_interval
