"""counts.bumps.relay: a wake-up per commit, the outbox as the truth, reconnection and catch-up, and no
double bumps when several relays wake on one commit."""

import collections
import logging
import threading

import pytest

from counts import markers
from counts.bumps.relay import APPLICATION_NAME, Relay
from counts.live.subscribers import written_at
from counts.markers import keys
from counts.postgres.pool import Database
from counts.settings import DEFAULT_MARKER_TTL, parse_redis_url
from tests.support.api import new_user
from tests.support.environment import MARKER_TTL
from tests.support.markers import read_marker
from tests.support.services import wait_until
from tests.support.supabase_chat import RELAY_BOUND


@pytest.fixture
def relay_db(chat):
    """A pool on the example's database, searching counts first (as the service's does)."""
    db = Database(chat.url, timeout=2, pool_size=4, schema="counts")
    yield db
    db.close()


@pytest.fixture
def start_relay(relay_db, redis_client):
    """Start relays on the example's database and the tests' Redis; stopped after the test."""
    started = []

    def start(client=redis_client, db=relay_db) -> Relay:
        relay = Relay(db, client, MARKER_TTL)
        started.append(relay)
        relay.start()
        assert relay.listening.wait(RELAY_BOUND), "the relay never listened"
        return relay

    yield start
    for relay in started:
        relay.stop()
    for relay in started:
        relay.join(timeout=5)
        assert not relay.is_alive(), "the relay did not stop"


def bump_in_sql(chat, *users) -> None:
    """What a trigger does: counts.bump() in a committed transaction (as the owner)."""
    with chat.admin() as conn, conn.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("SELECT counts.bump(%s::uuid[])", ([str(u) for u in users],))
        cur.execute("COMMIT")


def marker_moves(redis_client, user):
    """A predicate: the user's marker differs from the one they hold now."""
    held = read_marker(redis_client, user, MARKER_TTL)
    return lambda: read_marker(redis_client, user, MARKER_TTL) != held


def relay_backends(chat) -> list[int]:
    """Server pids of the relays' LISTEN connections."""
    with chat.admin() as conn, conn.cursor() as cur:
        cur.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s AND datname = "
                    "current_database()", (APPLICATION_NAME,))
        return [row[0] for row in cur.fetchall()]


def test_a_commit_moves_the_marker_through_the_relay(chat, start_relay, redis_client):
    start_relay()
    user = new_user()
    moved = marker_moves(redis_client, user)
    bump_in_sql(chat, user)
    wait_until(moved, timeout=RELAY_BOUND, what="the relay to bump")
    wait_until(lambda: chat.queued_for([user]) == 0, timeout=RELAY_BOUND, what="the row forgotten")


def test_the_relay_carries_the_sql_writes_transaction_time_to_the_feed(chat, start_relay,
                                                                       redis_client):
    start_relay()
    user = new_user()
    pubsub = redis_client.pubsub()
    pubsub.subscribe(keys.feed_channel(user))
    assert pubsub.get_message(timeout=5)["type"] == "subscribe"
    with chat.admin() as conn, conn.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("SELECT extract(epoch FROM now())::float8")
        began = cur.fetchone()[0]
        cur.execute("SELECT counts.bump(%s::uuid[])", ([str(user)],))
        cur.execute("COMMIT")
    message = pubsub.get_message(timeout=RELAY_BOUND)
    pubsub.close()
    # The outbox row's created_at: now() in the writer's transaction, where latency starts.
    assert message is not None and message["type"] == "message"
    assert written_at(message["data"]) == pytest.approx(began, abs=0.001)


def test_the_relay_catches_up_with_commits_made_before_it_listened(chat, start_relay, redis_client):
    user = new_user()
    moved = marker_moves(redis_client, user)
    bump_in_sql(chat, user)  # nobody listens: this notification is lost
    start_relay()
    wait_until(moved, timeout=RELAY_BOUND, what="the catch-up drain to bump")


def test_the_relay_reconnects_and_drains_what_it_missed(chat, start_relay, relay_db, redis_client):
    relay = start_relay()
    gate = threading.Event()
    connect = relay_db.dedicated

    def held_connect(*args, **kwargs):
        """Reconnect only once the test has committed behind the relay's back."""
        gate.wait(RELAY_BOUND)
        return connect(*args, **kwargs)

    relay_db.dedicated = held_connect
    [backend] = relay_backends(chat)
    with chat.admin() as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(%s)", (backend,))
    wait_until(lambda: not relay.listening.is_set(), timeout=RELAY_BOUND, what="the relay to notice")
    user = new_user()
    moved = marker_moves(redis_client, user)
    bump_in_sql(chat, user)  # notified while the relay is away: nobody gets it
    gate.set()
    wait_until(moved, timeout=RELAY_BOUND, what="the relay to drain after reconnecting")
    assert [pid for pid in relay_backends(chat) if pid != backend], "no new LISTEN connection"


def test_relays_woken_by_the_same_commits_never_bump_a_row_twice(chat, start_relay, monkeypatch,
                                                                  redis_client):
    bumped = collections.Counter()
    lock = threading.Lock()
    real_bump = markers.bump

    def counting_bump(client, user_ids, ttl=DEFAULT_MARKER_TTL, wal=None, written_at=None):
        user_ids = list(user_ids)
        with lock:
            bumped.update(user_ids)
        return real_bump(client, user_ids, ttl, wal, written_at)

    monkeypatch.setattr(markers, "bump", counting_bump)
    for _ in range(3):
        start_relay()
    users = [new_user() for _ in range(60)]
    for user in users:
        bump_in_sql(chat, user)
    wait_until(lambda: chat.queued_for(users) == 0, timeout=RELAY_BOUND, what="every row bumped")
    assert {user: bumped[user] for user in users} == dict.fromkeys(users, 1)


def test_a_notification_without_an_outbox_row_bumps_nobody(chat, start_relay, redis_client):
    """Anyone may NOTIFY the channel; the relay trusts only the outbox."""
    start_relay()
    user, fence = new_user(), new_user()
    moved = marker_moves(redis_client, user)
    with chat.admin() as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_notify('counts_bumps', %s)", (str(user),))
    fenced = marker_moves(redis_client, fence)
    bump_in_sql(chat, fence)
    wait_until(fenced, timeout=RELAY_BOUND, what="the fence's bump")
    assert not moved()


def test_a_bump_redis_refused_is_taken_by_the_next_wake_up(chat, start_relay, private_redis,
                                                           caplog):
    client = markers.connect(parse_redis_url(private_redis.url), 0.5, 8)
    start_relay(client=client)
    early, late = new_user(), new_user()
    private_redis.stop(save=True)
    with caplog.at_level(logging.INFO, logger="counts.bumps.relay"):
        bump_in_sql(chat, early)  # the relay wakes, Redis refuses: the row stays
        wait_until(lambda: "relay waits for Redis" in caplog.text, timeout=RELAY_BOUND,
                   what="the relay to try Redis")
    assert chat.queued_for([early]) == 1
    private_redis.start()
    held = read_marker(client, early, MARKER_TTL)
    bump_in_sql(chat, late)  # the next wake-up drains everything, the early row included
    wait_until(lambda: chat.queued_for([early, late]) == 0, timeout=RELAY_BOUND, what="both bumped")
    assert read_marker(client, early, MARKER_TTL) != held
    client.close()
