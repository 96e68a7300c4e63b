"""Per-host backoff: a push service that gave no answer is left alone for a while."""

import threading


class HostBackoff:
    """Hosts that did not answer are left alone for a while, so one hung provider cannot hold
    every round for its timeout. Per dispatcher process; it forgets a host once it answers."""

    def __init__(self, base: float, cap: float):
        self.base, self.cap = base, cap
        self._until: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._lock = threading.Lock()

    def wait(self, host: str, now: float) -> float:
        """Seconds left before `host` may be tried again (0: go)."""
        return max(0.0, self._until.get(host, 0.0) - now)

    def failed(self, host: str, now: float) -> None:
        """`host` gave no answer: wait longer each time, up to the cap."""
        with self._lock:
            failures = self._failures[host] = self._failures.get(host, 0) + 1
            self._until[host] = now + min(self.cap, self.base * 2 ** (failures - 1))

    def answered(self, host: str) -> None:
        """`host` answered: forget its failures."""
        with self._lock:
            self._until.pop(host, None)
            self._failures.pop(host, None)
