"""What the fault matrix's traffics (traffic.Traffic, live_traffic.LiveTraffic) have in common:
threads started together on entering their block and stopped together on leaving it."""

import threading
from typing import Self


class BackgroundThreads:
    """Daemon threads that run until `stopping` is set; each is given `join_timeout` seconds to
    finish what it is doing once stopped."""

    def __init__(self, join_timeout: float):
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.join_timeout = join_timeout

    def spawn(self, target, *args) -> None:
        """A thread running target(*args), started on entering."""
        self.threads.append(threading.Thread(target=target, args=args, daemon=True))

    def __enter__(self) -> Self:
        """Start every thread."""
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop every thread (each finishes what it is doing)."""
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=self.join_timeout)
