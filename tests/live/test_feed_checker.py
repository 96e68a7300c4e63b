"""The feed's checker: heartbeat re-checks are read together, and never ahead of a wake-up."""

import threading

from counts import markers
from counts.live import feed as feed_module
from counts.live.feed import Waiter
from tests.support.api import new_user
from tests.support.environment import MARKER_TTL
from tests.support.markers import read_marker
from tests.support.services import wait_until


def hold(feed, redis_client, count: int) -> list[Waiter]:
    """`count` long-poll waiters on new users, each holding its current marker, subscribed and
    re-checked once (their confirmations' re-checks are done)."""
    waiters = []
    for _ in range(count):
        user = str(new_user())
        waiter = Waiter(user, read_marker(redis_client, user, MARKER_TTL))
        assert feed.add(waiter)
        waiters.append(waiter)
    wait_until(lambda: all(feed.subscribed(w.user) for w in waiters), timeout=20,
               what="the feed to subscribe every user")
    wait_until(lambda: not feed._pending, timeout=20, what="the confirmations' re-checks")
    return waiters


def test_heartbeat_rechecks_are_read_soon_and_together(resources, redis_client, monkeypatch):
    """Hundreds of streams' heartbeats are a few reads, not one each (that was a fifth of the
    service's CPU at 8,000 streams, and held wake-ups behind it); each user is still read."""
    feed = resources.feed
    waiters = hold(feed, redis_client, 200)
    users = {w.user for w in waiters}
    reads: list[list[str]] = []
    read = markers.read_markers_and_lsns

    def recording(client, batch, *args, **kwargs):
        reads.append([user for user in batch if user in users])
        return read(client, batch, *args, **kwargs)

    monkeypatch.setattr(markers, "read_markers_and_lsns", recording)
    try:
        for user in users:
            feed.recheck(user)
        wait_until(lambda: {u for batch in reads for u in batch} == users, timeout=10,
                   what="every heartbeat's re-check to be read")
        assert sum(1 for batch in reads if batch) <= 3  # was 200
        assert all(w.fresh is None for w in waiters)  # nothing moved: nobody woken
    finally:
        for waiter in waiters:
            feed.remove(waiter)


def test_a_wake_up_is_read_before_the_routine_rechecks_queued_ahead_of_it(resources, redis_client,
                                                                         monkeypatch):
    """A published marker's re-check waits for at most one batch of heartbeat re-checks, never
    for all of them (10,000 streams: ten batches, the live delivery tail)."""
    feed = resources.feed
    waiters = hold(feed, redis_client, 2 * feed_module.BATCH + 1)
    woken = waiters.pop()
    routine = {w.user for w in waiters}
    reads: list[set[str]] = []
    read = markers.read_markers_and_lsns
    bumped = threading.Event()

    def recording(client, batch, *args, **kwargs):
        reads.append(set(batch))
        if not bumped.is_set() and routine & set(batch):
            # A write lands while the first routine batch is being read: its message arrives.
            bumped.set()
            markers.bump(redis_client, [woken.user], MARKER_TTL)
            with feed._lock:
                feed._woken([woken.user])
        return read(client, batch, *args, **kwargs)

    monkeypatch.setattr(markers, "read_markers_and_lsns", recording)
    try:
        for user in routine:
            feed.recheck(user)
        wait_until(lambda: woken.fresh is not None, timeout=10, what="the woken user's re-check")
        first = next(i for i, batch in enumerate(reads) if routine & batch)
        at = next(i for i, batch in enumerate(reads) if woken.user in batch)
        assert at == first + 1  # right after the batch in flight, ahead of the others
        wait_until(lambda: set().union(*reads) >= routine, timeout=10,
                   what="the routine re-checks to be read too")
        assert woken.take().token == read_marker(redis_client, woken.user, MARKER_TTL)
    finally:
        for waiter in [*waiters, woken]:
            feed.remove(waiter)
