"""The service on Redis Sentinel (a primary, a replica, three Sentinels), and the rollback a
failover causes (DESIGN.md invariant 9).

A client holds a marker; a write bumps it on the primary, which acknowledges; the replica never
gets the bump (its link frozen) and the primary dies; the Sentinels promote the replica, which
still holds the old marker. Without the epoch in the ETag the client's next poll is a 304 for
counts that changed, and stays one until the next bump: the test runs the same story against a
service whose scripts lost their epoch and requires that stale 304, so it cannot pass vacuously.

And a stream open through a failover: the worker's subscriber follows the primary the Sentinels
name, and the stream gets the next bump.
"""

import time

import pytest

from counts.markers import keys, scripts
from tests.support.api import Api, new_user
from tests.support.clusters import SentinelProcesses
from tests.support.live_clients import counts_reaching, open_stream, settled
from tests.support.postgres import true_total
from tests.support.services import Gunicorn, LiveClient, wait_until

WITHIN = 8.0  # seconds from the failover's end to the bump on the stream (heartbeat: 60)

# The epoch's Lua with the replication id replaced by a constant: the mutant.
REAL_EPOCH = "string.sub(string.match(replication, 'master_replid:(%x+)'), 1, 12)"
SCRIPTS = {"read_marker": "READ_MARKER", "read_markers": "READ_MARKERS",
           "bump_markers": "BUMP_MARKERS", "confirm_lsns": "CONFIRM_LSNS"}


@pytest.fixture
def sentinels(tmp_path):
    """A primary, a replica behind a freezable link, and three Sentinels; stopped after."""
    processes = SentinelProcesses(tmp_path)
    try:
        yield processes.start()
    finally:
        processes.stop()


def remove_the_epoch(monkeypatch) -> None:
    """Make every marker script use one constant epoch, as if the ETag were the marker alone."""
    assert REAL_EPOCH in scripts.EPOCH
    for script, source in SCRIPTS.items():
        mutant = getattr(scripts, source).replace(REAL_EPOCH, "'000000000000'")
        monkeypatch.setattr(scripts, script, scripts.MarkerScript(mutant))


@pytest.mark.parametrize("epoch", ["with the epoch", "without it (mutant)"])
def test_a_bump_lost_in_a_failover_costs_a_200_never_a_stale_304(
        epoch, sentinels, app_factory, tokens, pg, monkeypatch):
    if epoch != "with the epoch":
        remove_the_epoch(monkeypatch)
    app = app_factory(REDIS_URL=sentinels.url, COUNTS_REDIS_TIMEOUT=0.5)
    api = Api(app.test_client(), tokens)
    alice, bob = new_user(), new_user()
    conversation = api.conversation(alice, bob)
    held = api.counts(bob).headers["ETag"]
    assert api.counts(bob, etag=held).status_code == 304  # Sentinel-managed, 304s from Redis
    replica = sentinels.replica.client()
    key = keys.marker_key(bob)
    markers_before = {"primary": sentinels.primary.client().get(key), "replica": None}
    sentinels.wait_replicated(key)
    markers_before["replica"] = replica.get(key)

    sentinels.link.set_mode("stall")  # the replica hears nothing more from the primary
    assert api.send(conversation, alice).status_code == 201  # bumped on the primary...
    assert sentinels.primary.client().get(key) != markers_before["primary"]
    assert replica.get(key) == markers_before["replica"]  # ...never replicated
    sentinels.fail_over()  # SIGKILL the primary; the Sentinels promote the replica

    assert replica.get(key) == markers_before["replica"]  # the marker rolled back
    answer = api.counts(bob, etag=held)
    if epoch == "with the epoch":
        assert answer.status_code == 200, "a stale 304: the bump was lost in the failover"
        assert answer.get_json()["total"] == true_total(pg, bob) == 1
        assert api.counts(bob, etag=answer.headers["ETag"]).status_code == 304
    else:
        assert answer.status_code == 304, "the mutant should have answered the stale 304"


def test_a_stream_open_through_a_sentinel_failover_gets_the_bump_made_after_it(
        sentinels, server_env, tokens, pg, tmp_path):
    """An SSE stream (60-s heartbeats) is open when the primary is SIGKILLed; after the Sentinels
    promote the replica, a message reaches the stream within WITHIN: the subscriber reconnected
    to the new primary and subscribed again."""
    server = Gunicorn({**server_env, "REDIS_URL": sentinels.url, "COUNTS_REDIS_TIMEOUT": "0.5",
                       "COUNTS_STREAM_HEARTBEAT": "60"},
                      workers=1, log_path=tmp_path / "gunicorn.log").start()
    stream = None
    try:
        api = Api(LiveClient(server.url), tokens)
        alice, bob = new_user(), new_user()
        conversation = api.conversation(alice, bob)
        stream = open_stream(server.url, bob, tokens.user(bob), "sse")
        channel = keys.feed_channel(bob)
        wait_until(lambda: sentinels.primary.client().pubsub_numsub(channel) == [(channel.encode(), 1)],
                   timeout=WITHIN, what="the stream's channel to be held on the primary")
        sentinels.fail_over()
        failed_over = time.monotonic()
        assert api.send(conversation, alice).status_code == 201
        event = counts_reaching(stream, 1, timeout=WITHIN)
        event = settled(api, bob, stream, event, failed_over + WITHIN)
        assert event.counts["total"] == true_total(pg, bob) == 1
        assert sentinels.replica.client().pubsub_numsub(channel) == [(channel.encode(), 1)]
        print(f"sentinel failover under a stream: bumped {time.monotonic() - failed_over:.2f} s "
              "after the failover")
    finally:
        if stream is not None:
            stream.close()
        server.stop()
