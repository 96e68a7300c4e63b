"""The counts endpoint: headers, RFC 9110 If-None-Match, auth before conditionals, batch."""

import http.client
import uuid

import pytest

from counts.postgres import pool
from tests.support.api import new_user
from tests.support.postgres import true_total


@pytest.fixture
def chat(api):
    """Two users in a conversation where `bob` has one unread message from `alice`."""
    alice, bob = new_user(), new_user()
    conversation = api.conversation(alice, bob)
    assert api.send(conversation, alice).status_code == 201
    return {"alice": alice, "bob": bob, "conversation": conversation}


def test_counts_body_and_headers(api, chat, pg):
    response = api.counts(chat["bob"])
    assert response.status_code == 200
    assert response.get_json() == {
        "user_id": str(chat["bob"]), "total": 1, "unread_conversations": 1, "mentions": 0,
        "badge": 1, "threads": {"unread": 0, "unread_threads": 0, "mentions": 0},
        "conversations": [{"conversation_id": chat["conversation"], "unread": 1, "mentions": 0,
                           "notify": "all", "marked_unread": False, "parent_id": None}]}
    assert true_total(pg, chat["bob"]) == 1
    etag = response.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"') and len(etag) > 2
    assert response.headers["Cache-Control"] == "private, no-cache"
    assert response.headers["Vary"] == "Authorization"
    assert response.headers["X-Poll-Interval"] == "7"


def test_sender_has_nothing_unread(api, chat):
    assert api.counts(chat["alice"]).get_json()["total"] == 0


def test_not_modified_has_the_same_headers_and_no_body(api, chat):
    first = api.counts(chat["bob"])
    second = api.counts(chat["bob"], etag=first.headers["ETag"])
    assert second.status_code == 304
    assert second.data == b""
    for name in ("ETag", "Cache-Control", "Vary", "X-Poll-Interval"):
        assert second.headers[name] == first.headers[name]


def test_upper_case_user_id_is_the_same_user_and_the_same_etag(api, client, tokens, chat):
    etag = api.counts(chat["bob"]).headers["ETag"]
    url = f"/v1/users/{str(chat['bob']).upper()}/unread-counts"
    assert client.get(url, headers={**tokens.user(chat["bob"]), "If-None-Match": etag}).status_code == 304
    assert client.get(url, headers={**tokens.user(chat["alice"]), "If-None-Match": etag}).status_code == 403
    fresh = client.get(url, headers=tokens.user(chat["bob"]))
    assert fresh.status_code == 200 and fresh.headers["ETag"] == etag
    assert fresh.get_json()["user_id"] == str(chat["bob"])


def test_not_modified_sends_no_postgres_query(api, chat):
    etag = api.counts(chat["bob"]).headers["ETag"]
    before = pool.stats.queries
    for _ in range(20):
        assert api.counts(chat["bob"], etag=etag).status_code == 304
    assert pool.stats.queries == before
    assert api.counts(chat["bob"], etag='"other"').status_code == 200
    assert pool.stats.queries == before + 1  # the counter does see the 200 path's query


def _matrix_cases():
    # (If-None-Match built from the current tag T, expected status)
    return [
        ("exact", lambda t: f'"{t}"', 304),
        ("weak", lambda t: f'W/"{t}"', 304),
        ("list, match last", lambda t: f'"a", W/"b", "{t}"', 304),
        ("list, match first", lambda t: f'"{t}","zz"', 304),
        ("list with empty elements", lambda t: f' , "x", , "{t}" ', 304),
        ("star", lambda t: "*", 304),
        ("no match", lambda t: '"nope"', 200),
        ("weak no match", lambda t: 'W/"nope"', 200),
        ("unquoted", lambda t: t, 200),
        ("missing closing quote", lambda t: f'"{t}', 200),
        ("garbage around a match", lambda t: f'"{t}" garbage', 200),
        ("lowercase weak prefix", lambda t: f'w/"{t}"', 200),
        ("empty", lambda t: "", 200),
        ("prefix of the tag", lambda t: f'"{t[:-1]}"', 200),
    ]


@pytest.mark.parametrize(("case", "header", "status"), _matrix_cases(),
                         ids=[c[0] for c in _matrix_cases()])
def test_if_none_match_matrix(api, chat, case, header, status):
    tag = api.counts(chat["bob"]).headers["ETag"].strip('"')
    response = api.counts(chat["bob"], etag=header(tag))
    assert response.status_code == status
    if status == 200:
        assert response.get_json()["total"] == 1


@pytest.mark.parametrize("method", ["get", "head"])
def test_head_behaves_as_get_without_body(api, chat, method):
    first = api.counts(chat["bob"], method=method)
    assert first.status_code == 200
    if method == "head":
        assert first.data == b""
        assert int(first.headers["Content-Length"]) > 0
    again = api.counts(chat["bob"], etag=first.headers["ETag"], method=method)
    assert again.status_code == 304


def test_several_if_none_match_lines_over_real_http(live_server, tokens, api_live):
    user = api_live["bob"]
    conn = http.client.HTTPConnection("127.0.0.1", live_server.port, timeout=10)
    auth = tokens.user(user)["Authorization"]
    path = f"/v1/users/{user}/unread-counts"
    conn.request("GET", path, headers={"Authorization": auth})
    response = conn.getresponse()
    response.read()
    etag = response.getheader("ETag")
    assert response.status == 200

    def get(lines):
        conn.putrequest("GET", path)
        conn.putheader("Authorization", auth)
        for line in lines:
            conn.putheader("If-None-Match", line)
        conn.endheaders()
        answer = conn.getresponse()
        answer.read()
        return answer.status

    assert get(['"one", "two"', etag]) == 304
    assert get([etag, '"two"']) == 304
    assert get(['"one"', '"two"']) == 200
    conn.close()


@pytest.fixture
def api_live(live_server, tokens):
    """A conversation with one unread message for `bob`, created through the live server."""
    import requests

    alice, bob = new_user(), new_user()
    created = requests.post(live_server.url + "/v1/conversations", headers=tokens.service(),
                            json={"member_ids": [str(alice), str(bob)]}, timeout=10)
    conversation = created.json()["conversation_id"]
    sent = requests.post(f"{live_server.url}/v1/conversations/{conversation}/messages",
                         headers=tokens.user(alice),
                         json={"sender_id": str(alice), "body": "hi"}, timeout=10)
    assert sent.status_code == 201
    return {"alice": alice, "bob": bob}


# --- auth before conditionals (invariant 8) ----------------------------------------------------

def test_no_token_is_401_even_when_the_etag_matches(api, client, chat):
    etag = api.counts(chat["bob"]).headers["ETag"]
    response = client.get(f"/v1/users/{chat['bob']}/unread-counts",
                          headers={"If-None-Match": etag})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.mimetype == "application/problem+json"


def test_other_users_token_is_403_even_when_the_etag_matches(api, client, tokens, chat):
    etag = api.counts(chat["bob"]).headers["ETag"]
    response = client.get(f"/v1/users/{chat['bob']}/unread-counts",
                          headers={**tokens.user(chat["alice"]), "If-None-Match": etag})
    assert response.status_code == 403
    response = client.get(f"/v1/users/{chat['bob']}/unread-counts",
                          headers={**tokens.user(chat["alice"]), "If-None-Match": "*"})
    assert response.status_code == 403


def test_bad_token_is_401_even_with_star(client, chat):
    response = client.get(f"/v1/users/{chat['bob']}/unread-counts",
                          headers={"Authorization": "Bearer not.a.jwt", "If-None-Match": "*"})
    assert response.status_code == 401


def test_service_may_read_any_user(client, tokens, chat):
    response = client.get(f"/v1/users/{chat['bob']}/unread-counts", headers=tokens.service())
    assert response.status_code == 200
    assert response.get_json()["total"] == 1


def test_malformed_user_id_is_400_problem(client, tokens):
    response = client.get("/v1/users/not-a-uuid/unread-counts", headers=tokens.service())
    assert response.status_code == 400
    problem = response.get_json()
    assert response.mimetype == "application/problem+json"
    assert set(problem) >= {"type", "title", "status", "detail"}
    assert problem["status"] == 400


# --- batch -------------------------------------------------------------------------------------

def test_batch_answers_304_for_current_etags_and_queries_once(api, client, tokens, chat):
    carol = new_user()
    bob_etag = api.counts(chat["bob"]).headers["ETag"]
    before = pool.stats.queries
    response = client.post("/v1/unread-counts/batch", headers=tokens.service(), json={"users": [
        {"user_id": str(chat["bob"]), "etag": bob_etag},
        {"user_id": str(chat["alice"]), "etag": None},
        {"user_id": str(carol), "etag": '"stale"'},
    ]})
    assert pool.stats.queries == before + 1
    assert response.status_code == 200
    bob, alice, carol_entry = response.get_json()["users"]
    assert bob == {"user_id": str(chat["bob"]), "status": 304, "etag": bob_etag}
    assert alice["status"] == 200 and alice["counts"]["total"] == 0
    assert carol_entry["status"] == 200 and carol_entry["counts"]["user_id"] == str(carol)
    # The etags the batch hands out are the ones the single-user endpoint honours.
    assert api.counts(chat["alice"], etag=alice["etag"]).status_code == 304


def test_batch_with_every_etag_current_sends_no_query(api, client, tokens, chat):
    etag = api.counts(chat["bob"]).headers["ETag"]
    before = pool.stats.queries
    response = client.post("/v1/unread-counts/batch", headers=tokens.service(),
                           json={"users": [{"user_id": str(chat["bob"]), "etag": f"W/{etag}"}]})
    assert response.get_json()["users"][0]["status"] == 304
    assert pool.stats.queries == before


@pytest.mark.parametrize(("body", "status"), [
    ({"users": [{"user_id": str(uuid.uuid4()), "etag": None}] * 2}, 422),
    ({"users": [{"user_id": str(uuid.uuid4()), "etag": None} for _ in range(1001)]}, 422),
    ({"users": []}, 422),
    ({"users": [{"user_id": "nope", "etag": None}]}, 422),
    ({"users": [{"user_id": str(uuid.uuid4())}]}, 422),
    ({"users": [{"user_id": str(uuid.uuid4()), "etag": None, "extra": 1}]}, 422),
    ({"people": []}, 422),
])
def test_batch_rejects_bad_bodies(client, tokens, body, status):
    response = client.post("/v1/unread-counts/batch", headers=tokens.service(), json=body)
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"


def test_batch_is_for_services_only(client, tokens):
    user = new_user()
    response = client.post("/v1/unread-counts/batch", headers=tokens.user(user),
                           json={"users": [{"user_id": str(user), "etag": None}]})
    assert response.status_code == 403
