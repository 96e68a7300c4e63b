"""Stand-ins that record what the code under test asked of them instead of doing it."""

import threading


class SleepRecorder:
    """A `sleep` for CountsClient.run: records each wait, calls `then(n)` after the n-th wait,
    and stops the loop after `stop_after` waits."""

    def __init__(self, stop: threading.Event, stop_after: int, then=None):
        self.stop, self.stop_after, self.then = stop, stop_after, then
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.then is not None:
            self.then(len(self.waits))
        if len(self.waits) >= self.stop_after:
            self.stop.set()
