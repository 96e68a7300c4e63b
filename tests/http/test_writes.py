"""The write endpoints: what they store, whom they bump (invariant 3), bad input and authorization."""

import json
import uuid
from dataclasses import dataclass

import pytest

from tests.support.api import assert_problem, new_user
from tests.support.postgres import true_total

MIB = 1024 * 1024


def members_of(pg, conversation_id) -> list[str]:
    """The user ids Postgres holds as members of a conversation, sorted."""
    with pg.cursor() as cur:
        cur.execute("SELECT user_id::text FROM conversation_members WHERE conversation_id = %s"
                    " ORDER BY user_id", (str(conversation_id),))
        return [row[0] for row in cur.fetchall()]


def last_read_seq(pg, conversation_id, user_id) -> int:
    """A member's stored read state."""
    with pg.cursor() as cur:
        cur.execute("SELECT last_read_seq FROM conversation_members"
                    " WHERE conversation_id = %s AND user_id = %s", (str(conversation_id), str(user_id)))
        return cur.fetchone()[0]


def rows_of(pg, table: str, conversation_id) -> int:
    """How many rows of a table belong to a conversation."""
    with pg.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {table} WHERE conversation_id = %s", (str(conversation_id),))
        return cur.fetchone()[0]


def total(api, user) -> int:
    """The user's unread total as the API reports it."""
    response = api.counts(user)
    assert response.status_code == 200
    return response.get_json()["total"]


@pytest.fixture
def chat(api):
    """`alice` and `bob` in a conversation where `alice` sent two messages `bob` has not read."""
    alice, bob = new_user(), new_user()
    conversation = api.conversation(alice, bob)
    sent = [api.send(conversation, alice, f"message {n}") for n in (1, 2)]
    assert [r.status_code for r in sent] == [201, 201]
    return {"alice": alice, "bob": bob, "conversation": conversation,
            "messages": [r.get_json()["message_id"] for r in sent]}


# --- create, join, leave -----------------------------------------------------------------------

def test_create_conversation_stores_deduplicated_members(client, tokens, pg):
    alice, bob = new_user(), new_user()
    response = client.post("/v1/conversations", headers=tokens.service(),
                           json={"member_ids": [str(alice), str(bob), str(alice), str(bob)]})
    assert response.status_code == 201
    conversation = response.get_json()["conversation_id"]
    assert str(uuid.UUID(conversation)) == conversation
    assert members_of(pg, conversation) == sorted([str(alice), str(bob)])
    assert true_total(pg, alice) == true_total(pg, bob) == 0


def test_join_is_201_then_200_for_an_existing_member(client, tokens, pg, chat):
    carol = new_user()
    path = f"/v1/conversations/{chat['conversation']}/members"
    first = client.post(path, headers=tokens.service(), json={"user_id": str(carol)})
    assert first.status_code == 201
    assert first.get_json() == {"conversation_id": chat["conversation"], "user_id": str(carol)}
    again = client.post(path, headers=tokens.service(), json={"user_id": str(carol)})
    assert again.status_code == 200
    assert members_of(pg, chat["conversation"]) == sorted(map(str, [chat["alice"], chat["bob"], carol]))


def test_joiner_has_no_history_unread_but_counts_later_messages(api, client, tokens, pg, chat):
    carol = new_user()
    client.post(f"/v1/conversations/{chat['conversation']}/members", headers=tokens.service(),
                json={"user_id": str(carol)})
    assert total(api, carol) == true_total(pg, carol) == 0
    assert api.send(chat["conversation"], chat["alice"]).status_code == 201
    assert total(api, carol) == true_total(pg, carol) == 1


def test_join_unknown_conversation_is_404(client, tokens):
    response = client.post(f"/v1/conversations/{uuid.uuid4()}/members", headers=tokens.service(),
                           json={"user_id": str(new_user())})
    assert_problem(response, 404)


def test_leave_removes_the_member_and_their_unread(api, client, tokens, pg, chat):
    assert total(api, chat["bob"]) == 2
    response = client.delete(f"/v1/conversations/{chat['conversation']}/members/{chat['bob']}",
                             headers=tokens.service())
    assert response.status_code == 204
    assert members_of(pg, chat["conversation"]) == [str(chat["alice"])]
    assert total(api, chat["bob"]) == true_total(pg, chat["bob"]) == 0


def test_leave_by_a_non_member_is_404(client, tokens, chat):
    response = client.delete(f"/v1/conversations/{chat['conversation']}/members/{new_user()}",
                             headers=tokens.service())
    assert_problem(response, 404)


def test_leave_unknown_conversation_is_404(client, tokens):
    response = client.delete(f"/v1/conversations/{uuid.uuid4()}/members/{new_user()}",
                             headers=tokens.service())
    assert_problem(response, 404)


# --- send --------------------------------------------------------------------------------------

def test_send_returns_message_id_and_dense_seq(api, pg):
    alice, bob = new_user(), new_user()
    conversation = api.conversation(alice, bob)
    answers = [api.send(conversation, sender) for sender in (alice, bob, alice)]
    assert [a.status_code for a in answers] == [201, 201, 201]
    assert [a.get_json()["seq"] for a in answers] == [1, 2, 3]
    ids = [a.get_json()["message_id"] for a in answers]
    assert len(set(ids)) == 3 and all(str(uuid.UUID(i)) == i for i in ids)
    with pg.cursor() as cur:
        cur.execute("SELECT seq, id::text FROM messages WHERE conversation_id = %s ORDER BY seq",
                    (conversation,))
        assert cur.fetchall() == list(zip([1, 2, 3], ids, strict=True))


def test_send_counts_for_the_others_and_not_for_the_sender(api, pg):
    alice, bob, carol = new_user(), new_user(), new_user()
    conversation = api.conversation(alice, bob, carol)
    for _ in range(3):
        assert api.send(conversation, alice).status_code == 201
    assert total(api, alice) == true_total(pg, alice) == 0
    assert total(api, bob) == true_total(pg, bob) == 3
    assert total(api, carol) == true_total(pg, carol) == 3


def test_sending_reads_the_conversation_for_the_sender(api, pg, chat):
    assert api.send(chat["conversation"], chat["bob"]).status_code == 201
    assert total(api, chat["bob"]) == true_total(pg, chat["bob"]) == 0
    assert total(api, chat["alice"]) == true_total(pg, chat["alice"]) == 1


def test_send_to_unknown_conversation_is_404(api):
    assert_problem(api.send(uuid.uuid4(), new_user()), 404)


def test_send_by_a_non_member_is_refused_and_stores_nothing(api, pg, chat):
    assert api.send(chat["conversation"], new_user()).status_code == 403
    assert rows_of(pg, "messages", chat["conversation"]) == 2


# --- mark read ---------------------------------------------------------------------------------

def test_mark_read_defaults_to_everything(api, pg, chat):
    response = api.read(chat["conversation"], chat["bob"])
    assert response.status_code == 200
    assert response.get_json() == {"conversation_id": chat["conversation"],
                                   "user_id": str(chat["bob"]), "last_read_seq": 2}
    assert total(api, chat["bob"]) == true_total(pg, chat["bob"]) == 0


def test_mark_read_up_to_seq_is_partial(api, pg, chat):
    response = api.read(chat["conversation"], chat["bob"], up_to_seq=1)
    assert response.get_json()["last_read_seq"] == 1
    assert total(api, chat["bob"]) == true_total(pg, chat["bob"]) == 1


def test_mark_read_never_moves_backwards(api, pg, chat):
    assert api.read(chat["conversation"], chat["bob"], up_to_seq=2).get_json()["last_read_seq"] == 2
    later = api.read(chat["conversation"], chat["bob"], up_to_seq=1)
    assert later.status_code == 200
    assert later.get_json()["last_read_seq"] == 2
    assert last_read_seq(pg, chat["conversation"], chat["bob"]) == 2
    assert total(api, chat["bob"]) == true_total(pg, chat["bob"]) == 0


def test_mark_read_beyond_last_seq_is_clamped(api, pg, chat):
    response = api.read(chat["conversation"], chat["bob"], up_to_seq=1_000)
    assert response.get_json()["last_read_seq"] == 2
    assert last_read_seq(pg, chat["conversation"], chat["bob"]) == 2
    # Clamped, so the next message still counts as unread.
    assert api.send(chat["conversation"], chat["alice"]).status_code == 201
    assert total(api, chat["bob"]) == true_total(pg, chat["bob"]) == 1


def test_mark_read_by_a_non_member_is_404(api, chat):
    assert_problem(api.read(chat["conversation"], new_user()), 404)


def test_mark_read_of_unknown_conversation_is_404(api):
    assert_problem(api.read(uuid.uuid4(), new_user()), 404)


# --- delete message, delete conversation -------------------------------------------------------

def delete_message(client, tokens, conversation, message):
    return client.delete(f"/v1/conversations/{conversation}/messages/{message}",
                         headers=tokens.service())


def test_delete_message_drops_unread_and_is_idempotent(api, client, tokens, pg, chat):
    first = chat["messages"][0]
    assert delete_message(client, tokens, chat["conversation"], first).status_code == 204
    assert total(api, chat["bob"]) == true_total(pg, chat["bob"]) == 1
    assert delete_message(client, tokens, chat["conversation"], first).status_code == 204
    assert total(api, chat["bob"]) == true_total(pg, chat["bob"]) == 1


def test_deleted_messages_count_only_in_the_unread_gap_that_holds_them(api, client, tokens, pg, chat):
    # The counts query looks for deleted messages only where the conversation's last_deleted_seq
    # is past the member's read position; message deletes keep it, and it never moves back.
    api.read(chat["conversation"], chat["bob"], up_to_seq=1)
    assert delete_message(client, tokens, chat["conversation"], chat["messages"][1]).status_code == 204
    assert total(api, chat["bob"]) == true_total(pg, chat["bob"]) == 0  # seq 2 was in Bob's gap
    assert api.send(chat["conversation"], chat["alice"]).status_code == 201  # seq 3
    assert total(api, chat["bob"]) == true_total(pg, chat["bob"]) == 1
    assert delete_message(client, tokens, chat["conversation"], chat["messages"][0]).status_code == 204
    assert total(api, chat["bob"]) == true_total(pg, chat["bob"]) == 1  # seq 1: Bob had read it
    with pg.cursor() as cur:
        cur.execute("SELECT last_deleted_seq FROM conversations WHERE id = %s", (chat["conversation"],))
        assert cur.fetchone() == (2,)


def test_deleting_a_read_message_does_not_go_negative(api, client, tokens, pg, chat):
    api.read(chat["conversation"], chat["bob"])
    assert delete_message(client, tokens, chat["conversation"], chat["messages"][1]).status_code == 204
    assert total(api, chat["bob"]) == true_total(pg, chat["bob"]) == 0
    assert api.send(chat["conversation"], chat["alice"]).status_code == 201
    assert total(api, chat["bob"]) == true_total(pg, chat["bob"]) == 1


def test_delete_unknown_message_is_404(client, tokens, chat):
    assert_problem(delete_message(client, tokens, chat["conversation"], uuid.uuid4()), 404)


def test_delete_message_of_another_conversation_is_404(api, client, tokens, chat):
    other = api.conversation(chat["alice"], new_user())
    assert_problem(delete_message(client, tokens, other, chat["messages"][0]), 404)


def test_delete_message_in_unknown_conversation_is_404(client, tokens, chat):
    assert_problem(delete_message(client, tokens, uuid.uuid4(), chat["messages"][0]), 404)


def test_delete_conversation_removes_its_unread(api, client, tokens, pg, chat):
    path = f"/v1/conversations/{chat['conversation']}"
    assert client.delete(path, headers=tokens.service()).status_code == 204
    assert total(api, chat["bob"]) == true_total(pg, chat["bob"]) == 0
    assert rows_of(pg, "conversation_members", chat["conversation"]) == 0
    assert rows_of(pg, "messages", chat["conversation"]) == 0
    with pg.cursor() as cur:
        cur.execute("SELECT count(*) FROM conversations WHERE id = %s", (chat["conversation"],))
        assert cur.fetchone()[0] == 0
    assert_problem(client.delete(path, headers=tokens.service()), 404)


def test_delete_unknown_conversation_is_404(client, tokens):
    assert_problem(client.delete(f"/v1/conversations/{uuid.uuid4()}", headers=tokens.service()), 404)


# --- every count-changing event bumps before the write returns (invariant 3) -------------------

@dataclass
class World:
    """Two conversations: alice→bob (2 unread for bob) and dave→carol (1 unread); erin is in none."""

    api: object
    client: object
    tokens: object
    alice: uuid.UUID
    bob: uuid.UUID
    carol: uuid.UUID
    dave: uuid.UUID
    erin: uuid.UUID
    chat: str
    first_message: str


@pytest.fixture
def world(api, client, tokens, chat) -> World:
    carol, dave = new_user(), new_user()
    other = api.conversation(carol, dave)
    assert api.send(other, dave).status_code == 201
    return World(api, client, tokens, chat["alice"], chat["bob"], carol, dave, new_user(),
                 chat["conversation"], chat["messages"][0])


def _send(w: World):
    return w.api.send(w.chat, w.alice)


def _send_by_reader(w: World):
    return w.api.send(w.chat, w.bob)


def _mark_read(w: World):
    return w.api.read(w.chat, w.bob)


def _join(w: World):
    return w.client.post(f"/v1/conversations/{w.chat}/members", headers=w.tokens.service(),
                         json={"user_id": str(w.erin)})


def _leave(w: World):
    return w.client.delete(f"/v1/conversations/{w.chat}/members/{w.bob}", headers=w.tokens.service())


def _delete_message(w: World):
    return w.client.delete(f"/v1/conversations/{w.chat}/messages/{w.first_message}",
                           headers=w.tokens.service())


def _delete_conversation(w: World):
    return w.client.delete(f"/v1/conversations/{w.chat}", headers=w.tokens.service())


# (event, write, {affected user: unread total after the write}, users whose counts cannot change)
EVENTS = [
    ("send", _send, {"bob": 3}, ["alice", "carol"]),
    ("send by a member with unread", _send_by_reader, {"bob": 0, "alice": 1}, ["carol"]),
    ("mark-read", _mark_read, {"bob": 0}, ["alice", "carol"]),
    ("join", _join, {"erin": 0}, ["alice", "bob"]),
    ("leave", _leave, {"bob": 0}, ["alice", "carol"]),
    ("delete message", _delete_message, {"bob": 1}, ["carol", "dave"]),
    ("delete conversation", _delete_conversation, {"bob": 0}, ["carol", "dave"]),
]


@pytest.mark.parametrize(("event", "write", "after", "unaffected"), EVENTS, ids=[e[0] for e in EVENTS])
def test_affected_user_with_current_etag_gets_new_counts_right_after_the_write(
        world, pg, event, write, after, unaffected):
    users = {name: getattr(world, name) for name in after}
    etags = {name: world.api.counts(user).headers["ETag"] for name, user in users.items()}
    for name, user in users.items():
        assert world.api.counts(user, etag=etags[name]).status_code == 304  # current before
    assert write(world).status_code in (200, 201, 204)
    for name, user in users.items():
        response = world.api.counts(user, etag=etags[name])
        assert response.status_code == 200, f"{name} got a stale 304 after {event}"
        assert response.get_json()["total"] == true_total(pg, user) == after[name]
        assert response.headers["ETag"] != etags[name]


@pytest.mark.parametrize(("event", "write", "after", "unaffected"), EVENTS, ids=[e[0] for e in EVENTS])
def test_unaffected_user_keeps_getting_304(world, pg, event, write, after, unaffected):
    users = {name: getattr(world, name) for name in unaffected}
    before = {name: world.api.counts(user) for name, user in users.items()}
    assert write(world).status_code in (200, 201, 204)
    for name, user in users.items():
        response = world.api.counts(user, etag=before[name].headers["ETag"])
        assert response.status_code == 304, f"{name} was bumped by {event}"
        assert before[name].get_json()["total"] == true_total(pg, user)


# --- bump API ----------------------------------------------------------------------------------

def test_bump_returns_distinct_users_bumped_and_invalidates_their_etags(api, client, tokens):
    a, b, untouched = new_user(), new_user(), new_user()
    etags = {u: api.counts(u).headers["ETag"] for u in (a, b, untouched)}
    response = client.post("/v1/markers/bump", headers=tokens.service(),
                           json={"user_ids": [str(a), str(b), str(a)]})
    assert response.status_code == 200
    assert response.get_json() == {"bumped": 2}
    assert api.counts(a, etag=etags[a]).status_code == 200
    assert api.counts(b, etag=etags[b]).status_code == 200
    assert api.counts(untouched, etag=etags[untouched]).status_code == 304


def test_bump_accepts_the_maximum_of_10000_users(app_factory, tokens):
    # One script of 10,000 SETs and PUBLISHes: ~50 ms here, but on a loaded machine it outlasted
    # the default 0.25 s Redis timeout, and the bump was (rightly) queued instead.
    client = app_factory(COUNTS_REDIS_TIMEOUT=5).test_client()
    users = [str(uuid.uuid4()) for _ in range(10_000)]
    response = client.post("/v1/markers/bump", headers=tokens.service(), json={"user_ids": users})
    assert response.status_code == 200
    assert response.get_json() == {"bumped": 10_000}


# --- bad input: always a 4xx problem+json, never a 5xx -----------------------------------------

CID = "{cid}"  # replaced by the fixture conversation's id, so only the input is wrong
A_UUID = str(uuid.UUID(int=1))
MESSAGE = f"/v1/conversations/{CID}/messages"
READ = f"/v1/conversations/{CID}/read"
MEMBERS = f"/v1/conversations/{CID}/members"
BUMP = "/v1/markers/bump"
CREATE = "/v1/conversations"


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def bad(case, method, path, status, body=None, data=None, content_type="application/json"):
    """One bad-input case: a JSON `body`, or raw `data` sent with `content_type`."""
    return pytest.param(method, path, status, body, data, content_type, id=case)


BAD_INPUT = [
    # malformed UUIDs in the path: 400
    bad("path conversation id", "post", "/v1/conversations/not-a-uuid/messages", 400,
        {"sender_id": A_UUID, "body": "hi"}),
    bad("path conversation id on read", "post", "/v1/conversations/123/read", 400, {"user_id": A_UUID}),
    bad("path conversation id on members", "post", "/v1/conversations/x/members", 400,
        {"user_id": A_UUID}),
    bad("path conversation id on delete", "delete", "/v1/conversations/not-a-uuid", 400),
    bad("path member id", "delete", f"/v1/conversations/{CID}/members/not-a-uuid", 400),
    bad("path message id", "delete", f"/v1/conversations/{CID}/messages/{A_UUID[:-1]}z", 400),
    bad("path id with NUL", "delete", "/v1/conversations/%00", 400),
    # malformed UUIDs in the body: 422
    bad("member_ids element", "post", CREATE, 422, {"member_ids": ["not-a-uuid"]}),
    bad("member_ids element as number", "post", CREATE, 422, {"member_ids": [1]}),
    bad("sender_id", "post", MESSAGE, 422, {"sender_id": "alice", "body": "hi"}),
    bad("read user_id", "post", READ, 422, {"user_id": "12345"}),
    bad("member user_id", "post", MEMBERS, 422, {"user_id": "nope"}),
    bad("bump user_ids element", "post", BUMP, 422, {"user_ids": [A_UUID, "nope"]}),
    # not JSON at all: 400
    bad("truncated JSON", "post", CREATE, 400, data='{"member_ids": ['),
    bad("empty body", "post", MESSAGE, 400, data=""),
    bad("single-quoted JSON", "post", READ, 400, data="{'user_id': 'x'}"),
    bad("raw NUL byte in JSON", "post", MESSAGE, 400, data=f'{{"sender_id": "{A_UUID}", "body": "a\x00b"}}'),
    bad("integer with 5000 digits", "post", READ, 400,
        data=f'{{"user_id": "{A_UUID}", "up_to_seq": 1{"0" * 5000}}}'),
    # JSON that is not an object: 422
    bad("body is a list", "post", CREATE, 422, data="[]"),
    bad("body is a string", "post", MESSAGE, 422, data='"hello"'),
    bad("body is a number", "post", READ, 422, data="42"),
    bad("body is null", "post", BUMP, 422, data="null"),
    # wrong types: 422
    bad("message body as int", "post", MESSAGE, 422, {"sender_id": A_UUID, "body": 5}),
    bad("message body as list", "post", MESSAGE, 422, {"sender_id": A_UUID, "body": ["hi"]}),
    bad("member_ids as string", "post", CREATE, 422, {"member_ids": A_UUID}),
    bad("up_to_seq as string", "post", READ, 422, {"user_id": A_UUID, "up_to_seq": "1"}),
    bad("up_to_seq as float", "post", READ, 422, {"user_id": A_UUID, "up_to_seq": 1.5}),
    bad("up_to_seq as integral float", "post", READ, 422, {"user_id": A_UUID, "up_to_seq": 1.0}),
    bad("up_to_seq as true", "post", READ, 422, {"user_id": A_UUID, "up_to_seq": True}),
    bad("up_to_seq as false", "post", READ, 422, {"user_id": A_UUID, "up_to_seq": False}),
    bad("up_to_seq negative", "post", READ, 422, {"user_id": A_UUID, "up_to_seq": -1}),
    bad("up_to_seq beyond bigint", "post", READ, 422, {"user_id": A_UUID, "up_to_seq": 2**63}),
    bad("up_to_seq NaN", "post", READ, 422, data=f'{{"user_id": "{A_UUID}", "up_to_seq": NaN}}'),
    # unknown and missing fields: 422
    bad("unknown field on message", "post", MESSAGE, 422, {"sender_id": A_UUID, "body": "hi", "x": 1}),
    bad("unknown field on create", "post", CREATE, 422, {"member_ids": [A_UUID], "name": "x"}),
    bad("missing body", "post", MESSAGE, 422, {"sender_id": A_UUID}),
    bad("missing everything on message", "post", MESSAGE, 422, {}),
    bad("missing user_id on read", "post", READ, 422, {"up_to_seq": 1}),
    bad("missing user_id on members", "post", MEMBERS, 422, {}),
    bad("missing user_ids on bump", "post", BUMP, 422, {}),
    bad("missing member_ids", "post", CREATE, 422, {}),
    # sizes and content: 422
    bad("empty user_ids", "post", BUMP, 422, {"user_ids": []}),
    bad("10001 user_ids", "post", BUMP, 422, {"user_ids": [str(uuid.UUID(int=n)) for n in range(10_001)]}),
    bad("empty member_ids", "post", CREATE, 422, {"member_ids": []}),
    bad("empty message body", "post", MESSAGE, 422, {"sender_id": A_UUID, "body": ""}),
    bad("10001-char message body", "post", MESSAGE, 422, {"sender_id": A_UUID, "body": "x" * 10_001}),
    bad("NUL in message body", "post", MESSAGE, 422, {"sender_id": A_UUID, "body": "a\u0000b"}),
    bad("NUL in sender_id", "post", MESSAGE, 422, {"sender_id": A_UUID[:-1] + "\u0000", "body": "hi"}),
    # hostile shapes and sizes
    bad("100000 nested lists", "post", CREATE, 400, data=nested(100_000)),
    bad("100000 nested objects", "post", MESSAGE, 400, data='{"a":' * 100_000 + "1" + "}" * 100_000),
    bad("nesting inside a field", "post", CREATE, 400, data=f'{{"member_ids": {nested(100_000)}}}'),
    bad("body over 1 MiB", "post", MESSAGE, 413, {"sender_id": A_UUID, "body": "x" * MIB}),
    bad("text/plain", "post", MESSAGE, 415, data=json.dumps({"sender_id": A_UUID, "body": "hi"}),
        content_type="text/plain"),
    bad("form-encoded", "post", READ, 415, data=f"user_id={A_UUID}",
        content_type="application/x-www-form-urlencoded"),
    bad("no content type", "post", BUMP, 415, data=json.dumps({"user_ids": [A_UUID]}), content_type=None),
    # routing
    bad("unknown route", "get", "/v1/nope", 404),
    bad("unknown sub-route", "post", f"/v1/conversations/{CID}/archive", 404, {}),
    bad("GET on create", "get", CREATE, 405),
    bad("PUT on a conversation", "put", f"/v1/conversations/{CID}", 405, {}),
    bad("PATCH on bump", "patch", BUMP, 405, {"user_ids": [A_UUID]}),
    bad("DELETE on counts", "delete", f"/v1/users/{A_UUID}/unread-counts", 405),
]


@pytest.mark.parametrize(("method", "path", "status", "body", "data", "content_type"), BAD_INPUT)
def test_bad_input_is_a_4xx_problem(client, tokens, pg, chat, method, path, status, body, data,
                                    content_type):
    kwargs = {"json": body} if data is None and body is not None else {"data": data}
    if data is not None and content_type is not None:
        kwargs["content_type"] = content_type
    response = getattr(client, method)(path.replace(CID, chat["conversation"]),
                                       headers=tokens.service(), **kwargs)
    assert_problem(response, status)
    if status == 405:
        assert response.headers["Allow"]
    assert rows_of(pg, "messages", chat["conversation"]) == 2  # nothing was written


def test_lone_surrogate_in_message_body_is_a_4xx_problem(client, tokens, pg, chat):
    # Valid JSON ("\ud800" is a legal escape) but no valid UTF-8: Postgres text cannot hold it.
    data = json.dumps({"sender_id": str(chat["alice"]), "body": "a\ud800b"})
    response = client.post(f"/v1/conversations/{chat['conversation']}/messages", data=data,
                           content_type="application/json", headers=tokens.service())
    assert_problem(response, 422)
    assert rows_of(pg, "messages", chat["conversation"]) == 2


# --- authorization -----------------------------------------------------------------------------

def test_user_may_send_only_as_itself(client, tokens, pg, chat):
    response = client.post(f"/v1/conversations/{chat['conversation']}/messages",
                           headers=tokens.user(chat["alice"]),
                           json={"sender_id": str(chat["bob"]), "body": "spoofed"})
    assert_problem(response, 403)
    assert rows_of(pg, "messages", chat["conversation"]) == 2


def test_service_may_send_for_a_member(client, tokens, pg, chat):
    response = client.post(f"/v1/conversations/{chat['conversation']}/messages",
                           headers=tokens.service(), json={"sender_id": str(chat["bob"]), "body": "hi"})
    assert response.status_code == 201
    assert true_total(pg, chat["alice"]) == 1


def test_user_may_mark_read_only_for_itself(client, tokens, pg, chat):
    response = client.post(f"/v1/conversations/{chat['conversation']}/read",
                           headers=tokens.user(chat["alice"]), json={"user_id": str(chat["bob"])})
    assert_problem(response, 403)
    assert true_total(pg, chat["bob"]) == 2


SERVICE_ONLY = [
    ("create conversation", "post", "/v1/conversations", lambda c: {"member_ids": [str(c["alice"])]}),
    ("add member", "post", f"/v1/conversations/{CID}/members", lambda c: {"user_id": str(c["alice"])}),
    ("remove member", "delete", f"/v1/conversations/{CID}/members/{{alice}}", None),
    ("delete conversation", "delete", f"/v1/conversations/{CID}", None),
    ("delete message", "delete", f"/v1/conversations/{CID}/messages/{{message}}", None),
    ("bump", "post", "/v1/markers/bump", lambda c: {"user_ids": [str(c["alice"])]}),
    ("batch", "post", "/v1/unread-counts/batch",
     lambda c: {"users": [{"user_id": str(c["alice"]), "etag": None}]}),
]


def service_only_request(chat, path, body):
    url = path.replace(CID, chat["conversation"]).format(alice=chat["alice"],
                                                         message=chat["messages"][0])
    return url, ({} if body is None else {"json": body(chat)})


@pytest.mark.parametrize(("name", "method", "path", "body"), SERVICE_ONLY, ids=[s[0] for s in SERVICE_ONLY])
def test_user_token_on_service_endpoint_is_403(client, tokens, pg, chat, name, method, path, body):
    url, kwargs = service_only_request(chat, path, body)
    response = getattr(client, method)(url, headers=tokens.user(chat["alice"]), **kwargs)
    assert_problem(response, 403)
    assert members_of(pg, chat["conversation"]) == sorted(map(str, [chat["alice"], chat["bob"]]))
    assert rows_of(pg, "messages", chat["conversation"]) == 2


WRITES = [*SERVICE_ONLY,
          ("send", "post", f"/v1/conversations/{CID}/messages",
           lambda c: {"sender_id": str(c["alice"]), "body": "hi"}),
          ("mark read", "post", f"/v1/conversations/{CID}/read", lambda c: {"user_id": str(c["bob"])})]


@pytest.mark.parametrize(("name", "method", "path", "body"), WRITES, ids=[w[0] for w in WRITES])
def test_write_without_token_is_401(client, pg, chat, name, method, path, body):
    url, kwargs = service_only_request(chat, path, body)
    response = getattr(client, method)(url, **kwargs)
    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert rows_of(pg, "messages", chat["conversation"]) == 2
    assert true_total(pg, chat["bob"]) == 2
