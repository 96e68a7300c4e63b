"""counts.markers against fakeredis and, for the same behaviours, the real Redis test db."""

import re
import uuid

import fakeredis
import pytest

from counts import markers

TTL = 3600


@pytest.fixture
def user() -> uuid.UUID:
    """A user of this test's own, so no other test's key can collide with its marker."""
    return uuid.uuid4()


@pytest.fixture(params=["fakeredis", "redis"])
def store(request):
    """A fresh FakeRedis (Lua through lupa), or the real, shared Redis test db (hence `user`)."""
    if request.param == "fakeredis":
        return fakeredis.FakeRedis()
    return request.getfixturevalue("redis_client")


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
    assert markers.marker_key(user) == f"counts:{{{user}}}:marker"
    assert markers.marker_key(str(user)) == markers.marker_key(user)


def test_new_markers_are_etag_safe_and_distinct():
    fresh = {markers.new_marker() for _ in range(1_000)}
    assert len(fresh) == 1_000
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{16}", m) for m in fresh)


def test_read_marker_creates_once_then_returns_the_same(user, store):
    first = markers.read_marker(store, user, TTL)
    assert store.get(markers.marker_key(user)) == first.encode()
    assert markers.read_marker(store, user, TTL) == first
    assert markers.read_marker(store, str(user), TTL) == first


def test_read_marker_sets_the_ttl_on_create(user, store):
    markers.read_marker(store, user, TTL)
    assert TTL - 5 <= store.ttl(markers.marker_key(user)) <= TTL


def test_read_marker_uses_the_default_ttl(user, store):
    markers.read_marker(store, user)
    assert markers.DEFAULT_TTL - 5 <= store.ttl(markers.marker_key(user)) <= markers.DEFAULT_TTL


def test_reading_an_existing_marker_is_one_command(user, store, monkeypatch):
    created = markers.read_marker(store, user, TTL)
    trips = RoundTrips(store, monkeypatch)
    assert markers.read_marker(store, user, TTL) == created
    assert (trips.direct, trips.pipelines) == (1, [])


def test_bump_changes_the_marker(user, store):
    before = markers.read_marker(store, user, TTL)
    assert markers.bump(store, [user], TTL) == 1
    after = markers.read_marker(store, user, TTL)
    assert after != before


def test_bump_sets_the_ttl(user, store):
    markers.read_marker(store, user, 100)
    markers.bump(store, [user], TTL)
    assert TTL - 5 <= store.ttl(markers.marker_key(user)) <= TTL


def test_bump_of_a_missing_marker_creates_it_with_ttl(user, store):
    markers.bump(store, [user], TTL)
    assert store.exists(markers.marker_key(user))
    assert TTL - 5 <= store.ttl(markers.marker_key(user)) <= TTL


def test_bump_of_many_users_is_one_round_trip(store, monkeypatch):
    markers.bump(store, [uuid.uuid4()], TTL)  # the server now knows the script
    users = [uuid.uuid4() for _ in range(250)]
    trips = RoundTrips(store, monkeypatch)
    assert markers.bump(store, users, TTL) == 250
    assert (trips.direct, trips.pipelines) == (1, [])
    assert all(store.exists(markers.marker_key(u)) for u in users)


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
    values = [store.get(markers.marker_key(u)) for u in users]
    assert None not in values
    assert len(set(values)) == len(users)


def test_two_users_never_share_a_created_marker(store):
    users = [uuid.uuid4() for _ in range(200)]
    assert len({markers.read_marker(store, u, TTL) for u in users}) == len(users)


def test_markers_are_never_reused_across_create_delete_cycles(user, store):
    seen = []
    for _ in range(1_000):
        seen.append(markers.read_marker(store, user, TTL))
        store.delete(markers.marker_key(user))
    assert len(set(seen)) == len(seen)


def test_bumps_never_repeat_a_marker(user, store):
    seen = {markers.read_marker(store, user, TTL)}
    for _ in range(500):
        markers.bump(store, [user], TTL)
        seen.add(markers.read_marker(store, user, TTL))
    assert len(seen) == 501


def test_read_markers_keeps_existing_and_creates_missing_in_one_pipeline(store, monkeypatch):
    known, unknown, another = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    existing = markers.read_marker(store, known, TTL)
    trips = RoundTrips(store, monkeypatch)
    found = markers.read_markers(store, [known, unknown, another], TTL)
    assert trips.direct == 1 and trips.pipelines == [2]  # one MGET, one pipeline for the misses
    assert found[str(known)] == existing
    assert found[str(unknown)] == markers.read_marker(store, unknown, TTL) != existing
    assert len(set(found.values())) == 3
    assert TTL - 5 <= store.ttl(markers.marker_key(unknown)) <= TTL


def test_read_markers_of_existing_markers_is_one_command(store, monkeypatch):
    users = [uuid.uuid4() for _ in range(50)]
    created = {str(u): markers.read_marker(store, u, TTL) for u in users}
    trips = RoundTrips(store, monkeypatch)
    assert markers.read_markers(store, users, TTL) == created
    assert (trips.direct, trips.pipelines) == (1, [])


def test_markers_touch_only_their_own_keys(user, store):
    other = f"other:{{{user}}}"
    store.set(other, "keep")
    markers.read_marker(store, user, TTL)
    markers.bump(store, [user], TTL)
    assert store.get(other) == b"keep"
    assert sorted(store.keys(f"*{user}*")) == sorted([other.encode(), markers.marker_key(user).encode()])
