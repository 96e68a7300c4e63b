"""Counts as chat apps show them (issue 19), own mode, on real Postgres: mentions, notify levels,
mark as unread, threads and the badge, each body judged against a recount from the tables
(tests.support.postgres.true_counts), and the bumps of exactly the users whose counts changed."""

from uuid import UUID

import pytest

from counts.sources import own
from tests.support.api import Api, assert_problem, documented, new_user
from tests.support.postgres import true_counts


def body(api, user) -> dict:
    """The user's 200 body, without its user_id."""
    response = api.counts(user)
    assert response.status_code == 200
    counts = response.get_json()
    assert counts.pop("user_id") == str(user)
    return counts


def judged(api, pg, user, policy="messages") -> dict:
    """The user's body, asserted equal to the recount, and returned."""
    counts = body(api, user)
    assert counts == true_counts(pg, user, policy)
    return counts


def entry(counts, conversation) -> dict | None:
    listed = [e for e in counts["conversations"] if e["conversation_id"] == str(conversation)]
    return listed[0] if listed else None


def test_mentions_count_named_members_and_everyone_but_never_the_sender(api, pg, app):
    alice, bob, carol = new_user(), new_user(), new_user()
    room = api.conversation(alice, bob, carol)
    assert api.mention(room, alice, [bob, bob, alice]).status_code == 201  # dup and self dropped
    assert api.mention(room, alice, everyone=True).status_code == 201
    assert api.send(room, carol).status_code == 201
    bob_counts = judged(api, pg, bob)
    assert (bob_counts["total"], bob_counts["mentions"]) == (3, 2)
    assert entry(bob_counts, room)["mentions"] == 2
    carol_counts = judged(api, pg, carol)
    assert (carol_counts["total"], carol_counts["mentions"]) == (0, 0)  # sending read it all
    alice_counts = judged(api, pg, alice)
    assert (alice_counts["total"], alice_counts["mentions"]) == (1, 0)
    assert documented(app, "Counts", {"user_id": str(bob), **bob_counts})
    with pg.cursor() as cur:
        cur.execute("SELECT count(*) FROM message_mentions")
        assert cur.fetchone()[0] == 1  # bob once; alice never; everyone is a flag, not rows


def test_mentions_are_validated(api, app_factory, tokens, pg):
    alice, bob, stranger = new_user(), new_user(), new_user()
    small = Api(app_factory(COUNTS_MENTION_ALL_MAX_MEMBERS="1").test_client(), tokens)
    room = small.conversation(alice, bob)
    refused = assert_problem(small.mention(room, alice, [bob, stranger]), 422)
    assert str(stranger) in refused["detail"]
    too_many = small.mention(room, alice, [new_user() for _ in range(257)])
    assert assert_problem(too_many, 422)["errors"]
    assert_problem(small.mention(room, alice, everyone=True), 403)  # 2 members > 1, a user
    assert small.mention(room, alice, everyone=True, as_service=True).status_code == 201
    not_boolean = small.client.post(f"/v1/conversations/{room}/messages", headers=tokens.user(alice),
                                    json={"sender_id": str(alice), "body": "x",
                                          "mentions": {"all": 1}})
    assert_problem(not_boolean, 422)
    assert judged(small, pg, bob)["mentions"] == 1


@pytest.mark.parametrize("level", ["all", "mentions", "none"])
def test_a_level_applies_to_totals_and_badge_never_to_the_entry(api, pg, level):
    alice, bob = new_user(), new_user()
    muted, plain = api.conversation(alice, bob), api.conversation(alice, bob)
    assert api.notify(muted, bob, level).get_json() == {
        "conversation_id": muted, "user_id": str(bob), "notify": level}
    for _ in range(3):
        assert api.send(muted, alice).status_code == 201
    assert api.mention(muted, alice, [bob]).status_code == 201
    assert api.send(plain, alice).status_code == 201
    counts = judged(api, pg, bob)
    assert entry(counts, muted) == {"conversation_id": muted, "unread": 4, "mentions": 1,
                                    "notify": level, "marked_unread": False, "parent_id": None}
    expected = {"all": (5, 2, 1, 5), "mentions": (1, 1, 1, 2), "none": (1, 1, 0, 1)}[level]
    assert (counts["total"], counts["unread_conversations"], counts["mentions"],
            counts["badge"]) == expected


def test_only_that_member_or_a_service_sets_a_level_and_only_to_a_level(api, tokens):
    alice, bob = new_user(), new_user()
    room = api.conversation(alice, bob)
    assert_problem(api.notify(room, bob, "none", headers=tokens.user(alice)), 403)
    assert api.notify(room, bob, "none", headers=tokens.service()).status_code == 200
    assert_problem(api.notify(room, bob, "loud"), 422)
    assert_problem(api.notify(room, new_user(), "all", headers=tokens.service()), 404)
    assert_problem(api.notify(new_user(), bob, "all"), 404)


def test_mark_unread_as_a_flag_or_from_a_message_and_a_read_clears_it(api, pg):
    alice, bob = new_user(), new_user()
    room = api.conversation(alice, bob)
    assert api.mention(room, alice, [bob]).status_code == 201  # seq 1
    assert api.send(room, alice).status_code == 201  # seq 2
    assert api.read(room, bob).status_code == 200
    assert body(api, bob)["conversations"] == []
    flagged = api.unread(room, bob)
    assert flagged.get_json() == {"conversation_id": room, "user_id": str(bob),
                                  "last_read_seq": 2, "marked_unread": True}
    counts = judged(api, pg, bob)
    assert (counts["total"], counts["unread_conversations"], counts["badge"]) == (0, 1, 1)
    assert entry(counts, room)["marked_unread"] is True
    assert api.read(room, bob).status_code == 200
    assert judged(api, pg, bob)["conversations"] == []
    assert api.unread(room, bob, from_seq=1).get_json()["last_read_seq"] == 0
    counts = judged(api, pg, bob)
    assert (counts["total"], counts["mentions"], counts["badge"]) == (2, 1, 2)  # exact again
    assert api.unread(room, bob, from_seq=2).get_json()["last_read_seq"] == 0  # already unread
    assert_problem(api.unread(room, new_user()), 404)
    assert_problem(api.unread(room, bob, from_seq=0), 422)


def test_a_deleted_mentioned_message_stops_counting(api, pg, tokens):
    alice, bob = new_user(), new_user()
    room = api.conversation(alice, bob)
    named = api.mention(room, alice, [bob]).get_json()["message_id"]
    everyone = api.mention(room, alice, everyone=True, as_service=True).get_json()["message_id"]
    assert judged(api, pg, bob)["mentions"] == 2
    for message in (named, everyone):
        response = api.client.delete(f"/v1/conversations/{room}/messages/{message}",
                                     headers=tokens.service())
        assert response.status_code == 204
    counts = judged(api, pg, bob)
    assert (counts["total"], counts["mentions"]) == (0, 0)


def test_threads_count_apart_and_never_add_to_their_parent(api, pg, tokens):
    alice, bob = new_user(), new_user()
    room = api.conversation(alice, bob)
    assert api.send(room, alice).status_code == 201
    thread = api.thread(room, alice, bob, root_seq=1)
    for _ in range(2):
        assert api.send(thread, alice).status_code == 201
    assert api.mention(thread, alice, [bob]).status_code == 201
    counts = judged(api, pg, bob)
    assert entry(counts, room)["unread"] == 1
    assert entry(counts, thread) == {"conversation_id": thread, "unread": 3, "mentions": 1,
                                     "notify": "mentions", "marked_unread": False, "parent_id": room}
    assert (counts["total"], counts["unread_conversations"], counts["mentions"]) == (1, 1, 1)
    assert counts["threads"] == {"unread": 3, "unread_threads": 1, "mentions": 1}
    assert counts["badge"] == 2  # the room's unread, the thread's mention
    assert_problem(api.client.post("/v1/conversations", headers=tokens.service(), json={
        "member_ids": [str(bob)], "parent_id": thread}), 422)  # one level of threads
    assert_problem(api.client.post("/v1/conversations", headers=tokens.service(), json={
        "member_ids": [str(bob)], "parent_id": room, "root_seq": 9}), 422)
    assert_problem(api.client.post("/v1/conversations", headers=tokens.service(), json={
        "member_ids": [str(bob)], "parent_id": str(new_user())}), 404)
    held = api.counts(bob).headers["ETag"]
    assert api.client.delete(f"/v1/conversations/{room}", headers=tokens.service()).status_code == 204
    assert api.counts(bob, etag=held).status_code == 200  # bumped: the thread went with it
    assert judged(api, pg, bob)["conversations"] == []


@pytest.mark.parametrize("policy,badge", [("messages", 4), ("conversations", 3),
                                          ("mentions", 2), ("none", 0)])
def test_the_badge_follows_the_policy_and_a_user_may_choose_their_own(
        app_factory, tokens, pg, policy, badge):
    api = Api(app_factory(COUNTS_BADGE_POLICY=policy).test_client(), tokens)
    alice, bob = new_user(), new_user()
    loud, quiet, flagged = (api.conversation(alice, bob) for _ in range(3))
    assert api.send(loud, alice).status_code == 201
    assert api.mention(loud, alice, [bob]).status_code == 201
    assert api.notify(quiet, bob, "mentions").status_code == 200
    assert api.send(quiet, alice).status_code == 201
    assert api.mention(quiet, alice, [bob]).status_code == 201
    assert api.unread(flagged, bob).status_code == 200
    first = api.counts(bob)
    assert judged(api, pg, bob, policy)["badge"] == badge
    chosen = api.client.patch(f"/v1/users/{bob}/settings", headers=tokens.user(bob),
                              json={"badge_policy": "mentions"})
    assert chosen.get_json() == {"user_id": str(bob), "badge_policy": "mentions"}
    assert judged(api, pg, bob, policy)["badge"] == 2
    changed = api.counts(bob, etag=first.headers["ETag"]).status_code == 200
    assert changed == (policy != "mentions")  # the server's policy by name: nothing changed
    back = api.client.patch(f"/v1/users/{bob}/settings", headers=tokens.service(),
                            json={"badge_policy": None})
    assert back.status_code == 200
    assert judged(api, pg, bob, policy)["badge"] == badge
    assert_problem(api.client.patch(f"/v1/users/{bob}/settings", headers=tokens.user(alice),
                                    json={"badge_policy": "none"}), 403)
    assert_problem(api.client.patch(f"/v1/users/{bob}/settings", headers=tokens.user(bob),
                                    json={"badge_policy": "loud"}), 422)


def test_a_level_or_a_mark_bumps_exactly_when_the_body_changes(api, pg):
    alice, bob = new_user(), new_user()
    room = api.conversation(alice, bob)
    held = api.counts(bob).headers["ETag"]
    assert api.notify(room, bob, "none").status_code == 200  # nothing listed: nothing changed
    assert api.counts(bob, etag=held).status_code == 304
    assert api.send(room, alice).status_code == 201
    held = api.counts(bob).headers["ETag"]
    assert api.notify(room, bob, "none").status_code == 200  # the same level again
    assert api.counts(bob, etag=held).status_code == 304
    assert api.notify(room, bob, "mentions").status_code == 200  # listed: its entry changed
    response = api.counts(bob, etag=held)
    assert response.status_code == 200
    held = response.headers["ETag"]
    assert api.unread(room, bob).status_code == 200
    response = api.counts(bob, etag=held)
    assert response.status_code == 200
    held = response.headers["ETag"]
    assert api.unread(room, bob).status_code == 200  # flagged already
    assert api.counts(bob, etag=held).status_code == 304
    alice_etag = api.counts(alice).headers["ETag"]
    assert api.notify(room, bob, "all").status_code == 200
    assert api.counts(alice, etag=alice_etag).status_code == 304  # only bob's counts changed


def test_alerts_follow_the_level_and_badge_pushes_only_where_the_badge_can_change(pg):
    alice, loud, quiet, silent, named = (new_user() for _ in range(5))
    with pg.cursor() as cur:
        room, _ = own.create_conversation(cur, [alice, loud, quiet, silent, named])
        for user, level in ((quiet, "mentions"), (silent, "none"), (named, "mentions")):
            own.set_notify(cur, room, user, level)
        _, changes = own.send_message(cur, room, alice, "hi", own.Mentions([named, silent]))
        assert set(changes.bump) == {loud, quiet, silent, named}
        assert set(changes.alert) == {loud, named}
        _, changes = own.send_message(cur, room, alice, "all", own.Mentions(everyone=True))
        assert set(changes.alert) == {loud, quiet, named}
        _, changes = own.set_notify(cur, room, quiet, "none")  # 1 mention unread: badge changes
        assert (changes.bump, changes.badge) == ([quiet], [quiet])
        _, changes = own.set_notify(cur, room, silent, "all")
        assert (changes.bump, changes.badge) == ([silent], [silent])
        _, changes = own.mark_unread(cur, room, loud, None)  # unread already: same badge
        assert (changes.bump, changes.badge) == ([loud], [])


def test_a_delete_bumps_exactly_the_members_it_was_unread_for(api, pg, tokens):
    alice, bob, carol = new_user(), new_user(), new_user()
    room = api.conversation(alice, bob, carol)
    first, second = (api.mention(room, alice, [carol]).get_json()["message_id"] for _ in range(2))
    assert api.read(room, bob).status_code == 200
    assert api.notify(room, carol, "mentions").status_code == 200
    held = {user: api.counts(user).headers["ETag"] for user in (alice, bob, carol)}
    deleted = api.client.delete(f"/v1/conversations/{room}/messages/{first}",
                                headers=tokens.service())
    assert deleted.status_code == 204
    assert [api.counts(user, etag=held[user]).status_code for user in (alice, bob, carol)] == [
        304, 304, 200]
    with pg.cursor() as cur:
        _, changes = own.delete_message(cur, UUID(room), UUID(second))
    assert (changes.bump, changes.badge) == ([carol], [carol])  # mentioned, at `mentions`
    assert judged(api, pg, carol)["conversations"] == []


def test_sending_reads_the_conversation_and_clears_the_senders_mark(api, pg):
    alice, bob = new_user(), new_user()
    room = api.conversation(alice, bob)
    assert api.unread(room, bob).status_code == 200
    held = api.counts(bob).headers["ETag"]
    assert entry(judged(api, pg, bob), room)["marked_unread"] is True
    assert api.send(room, bob).status_code == 201
    assert api.counts(bob, etag=held).status_code == 200  # bumped: the mark is gone
    assert judged(api, pg, bob)["conversations"] == []


def test_unread_mentions_follow_every_pointer_move_and_delete_exactly(api, pg, tokens):
    """The member's kept count of unread mentions against the recount from message_mentions:
    a read, a move back, a delete of a mention already read and one still unread."""
    alice, bob = new_user(), new_user()
    room = api.conversation(alice, bob)
    first, _, third = (api.mention(room, alice, [bob]).get_json()["message_id"] for _ in range(3))
    assert judged(api, pg, bob)["mentions"] == 3
    assert api.read(room, bob, up_to_seq=1).status_code == 200
    assert judged(api, pg, bob)["mentions"] == 2
    for message in (first, third):  # read by bob, then unread by bob
        response = api.client.delete(f"/v1/conversations/{room}/messages/{message}",
                                     headers=tokens.service())
        assert response.status_code == 204
    assert judged(api, pg, bob)["mentions"] == 1
    assert api.read(room, bob).status_code == 200
    assert judged(api, pg, bob)["conversations"] == []
    assert api.unread(room, bob, from_seq=1).status_code == 200
    assert judged(api, pg, bob)["mentions"] == 1  # the second: the others are gone
