"""Server-Sent Events: a user's counts as `text/event-stream`.

Event `counts`, `id:` the ETag exactly as the header's value, `data:` the 200 body. The first
bytes go out at once (the current counts, or a comment when the client holds them), then a
comment every heartbeat (proxies drop idle connections; a dead client shows at the next write).
`retry:` asks EventSource to reconnect after the poll interval; at shutdown, after a random delay.
"""

import time
from collections.abc import Callable, Iterator

from counts.live.stream import Subscription, Update
from counts.observability import metrics

HEADERS = {"Cache-Control": "private, no-store", "X-Accel-Buffering": "no"}
HEARTBEAT = b": heartbeat\n\n"


def event(update: Update) -> bytes:
    """One `counts` event."""
    return f"event: counts\nid: {update.etag}\ndata: {update.body}\n\n".encode()


def retry(milliseconds: int) -> bytes:
    """The reconnection delay EventSource should use."""
    return f"retry: {milliseconds}\n\n".encode()


def events(sub: Subscription, first: Update | None, retry_ms: int, heartbeat: float,
           release: Callable[[], None] | None = None) -> Iterator[bytes]:
    """The stream's bytes until the client leaves, its token expires or the worker stops.
    `release` lets go of the request once the stream runs (it is held as long as the stream)."""
    # Every write wakes the device's radio, heartbeats too: counts_wakeups_total{transport="live"}.
    wakeup = metrics.WAKEUPS.labels("live")
    metrics.DEVICE_REQUESTS.labels("live").inc()
    try:
        if release is not None:
            release()
        wakeup.inc()
        opening = retry(retry_ms) + (event(first) if first else b": connected\n\n")
        release = first = None  # this frame lives for hours: it keeps only what it uses
        yield opening
        del opening
        next_beat = time.monotonic() + heartbeat
        while True:
            sub.wait(next_beat - time.monotonic())
            if sub.closing:
                wakeup.inc()
                yield retry(sub.waiter.retry_ms)
                return
            if not sub.trusted:
                return
            update = sub.change()
            if update is not None:
                metrics.LIVE_EVENTS.labels("sse").inc()
                wakeup.inc()
                yield event(update)  # resumed once the server has written it
                sub.waiter.delivered("sse")
            if time.monotonic() >= next_beat:
                next_beat = time.monotonic() + heartbeat
                sub.heartbeat()
                wakeup.inc()
                yield HEARTBEAT
    finally:
        sub.close()
