"""Hostile input: oversized headers and bodies, framing, odd ids and encodings; and no token in the logs.

Where the HTTP server matters (header and body limits, chunked framing, raw bytes in the request
line, the logs) the requests go as raw bytes to the live service under gunicorn; where only the app
decides (JSON shapes, content types) they go through Flask's test client. Each case here is one
tests/http/test_writes.py and tests/identity/test_auth.py do not already cover. Cases that share
a live server are subtests of one test: a gunicorn start costs more than all of its requests.
"""

import base64
import contextlib
import http.client
import json
import re
import socket
import time
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import quote

import pytest

from counts.identity import mint_token
from counts.markers import keys
from tests.support.api import REASON_PHRASES, new_user
from tests.support.environment import SECRET
from tests.support.services import Gunicorn

MIB = 1024 * 1024
PROMPT = 2.0  # seconds: what "answered at once" means for a request the server must refuse


@dataclass
class Answer:
    """A response read off the socket, and how long it took after the request was sent."""

    status: int
    headers: http.client.HTTPMessage
    body: bytes
    seconds: float

    def json(self):
        return json.loads(self.body)


def raw_request(method: str, path: str, headers: dict[str, str] | None = None,
                body: bytes = b"") -> bytes:
    """An HTTP/1.1 request as bytes; headers are sent exactly as given (no Content-Length added)."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body


def exchange(port: int, request: bytes, timeout: float = 10.0) -> Answer:
    """Send `request` on a fresh connection and read the whole answer (timeout: fail, not hang)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)  # a server may answer and hang up before taking it all
        started = time.monotonic()
        response = http.client.HTTPResponse(sock, method=request.split(b" ", 1)[0].decode())
        try:
            response.begin()
            body = response.read()
        finally:
            response.close()
        return Answer(response.status, response.headers, body, time.monotonic() - started)


def json_request(method: str, path: str, auth: dict[str, str], payload: bytes,
                 content_type: str = "application/json") -> bytes:
    """A request with a body and its Content-Length."""
    return raw_request(method, path, {**auth, "Content-Type": content_type,
                                      "Content-Length": str(len(payload))}, payload)


def assert_problem(status: int, content_type: str | None, body: bytes, expected: int) -> dict:
    """An RFC 9457 problem+json with this status, titled with its reason phrase."""
    assert status == expected, body[:300]
    assert content_type == "application/problem+json", body[:300]
    problem = json.loads(body)
    assert problem["status"] == expected and {"type", "title", "detail"} <= set(problem)
    assert problem["title"] == REASON_PHRASES.get(expected, HTTPStatus(expected).phrase)
    return problem


def assert_answer_problem(answer: Answer, expected: int) -> dict:
    return assert_problem(answer.status, answer.headers.get("Content-Type"), answer.body, expected)


def assert_response_problem(response, expected: int) -> dict:
    return assert_problem(response.status_code, response.mimetype, response.data, expected)


def chunked(*chunks: bytes) -> bytes:
    """A chunked transfer-coding of `chunks`, with the last (empty) chunk."""
    return b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks) + b"0\r\n\r\n"


COUNTS = "/v1/users/{}/unread-counts"


@pytest.fixture
def bob(live_server, tokens) -> dict:
    """A user, their token and their current ETag on the live service."""
    user = new_user()
    auth = tokens.user(user)
    answer = exchange(live_server.port, raw_request("GET", COUNTS.format(user), auth))
    assert answer.status == 200
    return {"user": user, "auth": auth, "etag": answer.headers["ETag"]}


# --- If-None-Match: size and shape -------------------------------------------------------------

def test_if_none_match_over_gunicorns_field_limit_is_refused_at_once(live_server, bob, subtests):
    for size in (8 * 1024, 100 * 1024):
        with subtests.test(bytes=size):
            header = ('"x", ' * size)[:size]
            answer = exchange(live_server.port, raw_request("GET", COUNTS.format(bob["user"]),
                                                            {**bob["auth"], "If-None-Match": header}))
            assert 400 <= answer.status < 500  # 431 from gunicorn, before the app is reached
            assert answer.seconds < PROMPT


def test_if_none_match_just_under_the_limit_is_answered(live_server, bob, subtests):
    for current, status in ((True, 304), (False, 200)):
        with subtests.test(matching=current):
            tags = [f'W/"{n:012d}"' for n in range(440)] + ([bob["etag"]] if current else [])
            header = ", ".join(tags)
            assert 7_500 < len(header) < 8_100  # gunicorn refuses header lines over 8190 bytes
            answer = exchange(live_server.port, raw_request("GET", COUNTS.format(bob["user"]),
                                                            {**bob["auth"], "If-None-Match": header}))
            assert answer.status == status
            assert answer.seconds < PROMPT


# ", , , , x": before the "x" fails the match, the If-None-Match regex (counts.conditional) tries
# every way of sharing each space between the `\s*` after one comma and the `\s*` before the next:
# 2**n steps for n commas, under the GIL, so the whole worker process stops answering meanwhile.
def test_malformed_if_none_match_costs_no_backtracking(live_server, bob):
    header = ", " * 25 + "x"  # 51 bytes
    request = raw_request("GET", COUNTS.format(bob["user"]), {**bob["auth"], "If-None-Match": header})
    try:
        answer = exchange(live_server.port, request, timeout=PROMPT)
    except TimeoutError:
        pytest.fail(f"If-None-Match {header!r} ({len(header)} bytes) got no answer in {PROMPT} s")
    assert answer.status == 200  # malformed: no match, never an error


# --- sizes: lists and bodies -------------------------------------------------------------------

def test_lists_over_their_limits_are_422_over_http(live_server, tokens, subtests):
    oversize = {
        "batch of 10,000": ("/v1/unread-counts/batch", "users",
                            [{"user_id": str(uuid.uuid4()), "etag": None} for _ in range(10_000)]),
        "bump of 10,001": ("/v1/markers/bump", "user_ids", [str(uuid.uuid4()) for _ in range(10_001)]),
    }
    for case, (path, field_name, items) in oversize.items():
        with subtests.test(case):
            payload = json.dumps({field_name: items}).encode()
            answer = exchange(live_server.port, json_request("POST", path, tokens.service(), payload))
            assert field_name in assert_answer_problem(answer, 422)["errors"]
            assert answer.seconds < 5


def test_50_mib_body_is_refused_before_it_is_sent(live_server, tokens, subtests):
    refusals = {"bump": ("/v1/markers/bump", tokens.service(), 413),
                "send": (f"/v1/conversations/{uuid.uuid4()}/messages", tokens.service(), 413),
                "no token": ("/v1/markers/bump", {}, 401)}
    for case, (path, auth, status) in refusals.items():
        with subtests.test(case):
            headers = {**auth, "Content-Type": "application/json", "Content-Length": str(50 * MIB)}
            request = raw_request("POST", path, headers, b"[" * 65_536)
            answer = exchange(live_server.port, request)  # 64 KiB of the promised 50 MiB, then read
            assert_answer_problem(answer, status)
            assert answer.seconds < PROMPT


# --- Transfer-Encoding: chunked ----------------------------------------------------------------

def test_chunked_json_body_is_read_whole(live_server, tokens):
    users = [str(uuid.uuid4()) for _ in range(3)]
    payload = json.dumps({"user_ids": users}).encode()
    headers = {**tokens.service(), "Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    pieces = [payload[i:i + 7] for i in range(0, len(payload), 7)]
    answer = exchange(live_server.port, raw_request("POST", "/v1/markers/bump", headers, chunked(*pieces)))
    assert answer.status == 200, answer.body
    assert answer.json() == {"bumped": 3}


# Werkzeug stops reading a chunked body at MAX_CONTENT_LENGTH and hands the view the first 1 MiB as
# if that were all: a body over the limit is a 400 (truncated JSON) or, if its first MiB happens
# to be valid JSON, accepted; docs/api.md promises 413 for every body over 1 MiB.
def test_chunked_body_over_1_mib_is_413(live_server, tokens, subtests):
    payloads = {"truncated is invalid JSON": b'{"user_ids": ["' + b"0" * (2 * MIB) + b'"]}',
                "truncated is valid JSON":
                    b'{"user_ids": ["%s"]}' % str(uuid.uuid4()).encode() + b" " * (2 * MIB)}
    headers = {**tokens.service(), "Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    for case, payload in payloads.items():
        with subtests.test(case):
            pieces = [payload[i:i + 65_536] for i in range(0, len(payload), 65_536)]
            answer = exchange(live_server.port, raw_request("POST", "/v1/markers/bump", headers,
                                                            chunked(*pieces)))
            assert_answer_problem(answer, 413)


def test_bad_framing_is_a_4xx_and_not_acted_on(live_server, tokens, redis_client, subtests):
    framings = {
        "chunked and Content-Length": ({"Transfer-Encoding": "chunked", "Content-Length": "5"}, None),
        "chunked then identity": ({"Transfer-Encoding": "chunked, identity"}, None),
        "unsupported coding": ({"Transfer-Encoding": "gzip"}, None),
        # gunicorn raises its InvalidChunkSize while Flask reads the body, inside the view.
        "malformed chunk size": ({"Transfer-Encoding": "chunked"}, b"zz\r\n{}\r\n0\r\n\r\n"),
    }
    for case, (framing, malformed) in framings.items():
        with subtests.test(case):
            user = str(uuid.uuid4())
            headers = {**tokens.service(), "Content-Type": "application/json", **framing}
            body = malformed or chunked(json.dumps({"user_ids": [user]}).encode())
            answer = exchange(live_server.port, raw_request("POST", "/v1/markers/bump", headers, body))
            assert 400 <= answer.status < 500 or answer.status == 501, answer.body  # 501: unknown coding
            assert redis_client.exists(keys.marker_key(user)) == 0  # not acted on


# --- path ids: NUL, unicode, RTL, bad UTF-8 ----------------------------------------------------

PATH_IDS = {
    "NUL": "\x00",
    "emoji": "\U0001f600",
    "RTL override": "\u202e" + str(uuid.UUID(int=1))[::-1],
    "zero-width space in a UUID": str(uuid.UUID(int=1)).replace("-", "\u200b", 1),
    "overlong UTF-8 NUL": bytes([0xC0, 0x80]),
    "lone surrogate": bytes([0xED, 0xA0, 0x80]),
    "byte 0xFF": bytes([0xFF]),
    "CRLF": "\r\nX-Injected: 1",
}
PATHS = {
    "counts": ("GET", "/v1/users/{}/unread-counts"),
    "delete conversation": ("DELETE", "/v1/conversations/{}"),
    "send message": ("POST", "/v1/conversations/{}/messages"),
    "remove member": ("DELETE", "/v1/conversations/" + str(uuid.UUID(int=2)) + "/members/{}"),
    "delete message": ("DELETE", "/v1/conversations/" + str(uuid.UUID(int=2)) + "/messages/{}"),
}


def test_percent_encoded_odd_path_id_is_400_problem(live_server, tokens, subtests):
    body = json.dumps({"sender_id": str(uuid.uuid4()), "body": "hi"}).encode()
    for endpoint, (method, path) in PATHS.items():
        for case, value in PATH_IDS.items():
            with subtests.test(endpoint=endpoint, id=case):
                encoded = quote(value if isinstance(value, bytes) else value.encode(), safe="")
                request = json_request(method, path.format(encoded), tokens.service(), body)
                answer = exchange(live_server.port, request)
                assert_answer_problem(answer, 400)
                assert "X-Injected" not in answer.headers
    with subtests.test("an encoded slash is another route: 404"):
        answer = exchange(live_server.port, raw_request("GET", COUNTS.format("a%2Fb"), tokens.service()))
        assert_answer_problem(answer, 404)


def test_raw_bytes_in_the_path_are_refused_by_gunicorn(live_server, tokens, subtests):
    raw = {"emoji": "\U0001f600".encode(), "RTL": "\u202eabc".encode(), "NUL": b"\x00",
           "0xFF": b"\xff", "space": b"a b"}
    for case, value in raw.items():
        with subtests.test(case):
            request = (b"GET /v1/users/" + value + b"/unread-counts HTTP/1.1\r\nHost: x\r\n"
                       b"Connection: close\r\n")
            request += f"Authorization: {tokens.service()['Authorization']}\r\n\r\n".encode()
            answer = exchange(live_server.port, request)
            assert 400 <= answer.status < 500


# Python's UUID() reads any Unicode digit (its int(..., 16) does), so this path names user 1111...1
# although the document promises RFC 9562 text: one id should have one spelling on the wire.
def test_path_id_in_non_ascii_digits_is_400_problem(live_server, tokens, subtests):
    for case, digit in (("Arabic-Indic", "\u0661"), ("fullwidth", "\uff11")):
        with subtests.test(case):
            value = quote((digit * 32).encode(), safe="")
            answer = exchange(live_server.port, raw_request("GET", COUNTS.format(value), tokens.service()))
            assert_answer_problem(answer, 400)


# --- JSON that is not an object, on every POST endpoint ----------------------------------------

CID = str(uuid.UUID(int=3))
A_USER = str(uuid.UUID(int=4))
POSTS = {
    "create": ("/v1/conversations", {"member_ids": [A_USER]}),
    "add member": (f"/v1/conversations/{CID}/members", {"user_id": A_USER}),
    "send": (f"/v1/conversations/{CID}/messages", {"sender_id": A_USER, "body": "hi"}),
    "read": (f"/v1/conversations/{CID}/read", {"user_id": A_USER}),
    "bump": ("/v1/markers/bump", {"user_ids": [A_USER]}),
    "batch": ("/v1/unread-counts/batch", {"users": [{"user_id": A_USER, "etag": None}]}),
}


def not_objects(valid: dict) -> dict[str, str]:
    """JSON documents that are not an object, some wrapping the endpoint's valid body."""
    return {"true": "true", "float": "1.5", "null": "null", "empty string": '""',
            "valid body in a list": json.dumps([valid]),
            "valid body as a JSON string": json.dumps(json.dumps(valid))}


NOT_OBJECTS = [pytest.param(path, data, id=f"{name}: {kind}")
               for name, (path, valid) in POSTS.items()
               for kind, data in not_objects(valid).items()]


@pytest.mark.parametrize(("path", "data"), NOT_OBJECTS)
def test_json_that_is_not_an_object_is_422_on_every_post(client, tokens, path, data):
    response = client.post(path, data=data, content_type="application/json", headers=tokens.service())
    assert_response_problem(response, 422)


@pytest.mark.parametrize(("path", "valid"), POSTS.values(), ids=POSTS.keys())
def test_malformed_json_is_400_saying_where_on_every_post(client, tokens, path, valid):
    response = client.post(path, data=json.dumps(valid)[:-1], content_type="application/json",
                           headers=tokens.service())
    problem = assert_response_problem(response, 400)
    assert problem["detail"].startswith("The request body is not valid JSON: ")
    assert re.search(r"line 1 column \d+ \(char \d+\)", problem["detail"])
    assert "browser (or proxy)" not in problem["detail"]  # Werkzeug's own words say nothing


@pytest.mark.parametrize("content_type", ["text/plain", "text/plain; charset=utf-8",
                                          "application/x-www-form-urlencoded", "multipart/form-data"])
@pytest.mark.parametrize(("path", "valid"), POSTS.values(), ids=POSTS.keys())
def test_a_body_that_is_not_declared_json_is_415_on_every_post(client, tokens, path, valid, content_type):
    response = client.post(path, data=json.dumps(valid), content_type=content_type,
                           headers=tokens.service())
    assert_response_problem(response, 415)


@pytest.fixture
def chat(api) -> dict:
    """A conversation of `alice` and `bob`."""
    alice, bob = new_user(), new_user()
    return {"alice": alice, "bob": bob, "conversation": api.conversation(alice, bob)}


def senders(pg, conversation) -> list[str]:
    with pg.cursor() as cur:
        cur.execute("SELECT sender_id::text FROM messages WHERE conversation_id = %s ORDER BY seq",
                    (conversation,))
        return [row[0] for row in cur.fetchall()]


def test_json_declared_latin_1_is_read_as_utf_8(client, tokens, pg, chat):
    # RFC 8259: JSON is UTF-8 and application/json has no charset parameter; the parameter is ignored.
    path = f"/v1/conversations/{chat['conversation']}/messages"
    content_type = "application/json; charset=latin-1"
    ascii_body = json.dumps({"sender_id": str(chat["alice"]), "body": "plain"}).encode()
    response = client.post(path, data=ascii_body, content_type=content_type, headers=tokens.service())
    assert response.status_code == 201
    utf8 = json.dumps({"sender_id": str(chat["alice"]), "body": "caf\u00e9"}, ensure_ascii=False)
    response = client.post(path, data=utf8.encode("utf-8"), content_type=content_type,
                           headers=tokens.service())
    assert response.status_code == 201
    with pg.cursor() as cur:
        cur.execute("SELECT body FROM messages WHERE conversation_id = %s ORDER BY seq",
                    (chat["conversation"],))
        assert [row[0] for row in cur.fetchall()] == ["plain", "caf\u00e9"]


def test_latin_1_bytes_in_a_json_body_are_400_and_store_nothing(client, tokens, pg, chat):
    path = f"/v1/conversations/{chat['conversation']}/messages"
    latin1 = json.dumps({"sender_id": str(chat["alice"]), "body": "caf\u00e9"}, ensure_ascii=False)
    response = client.post(path, data=latin1.encode("latin-1"),
                           content_type="application/json; charset=latin-1", headers=tokens.service())
    assert_response_problem(response, 400)
    assert senders(pg, chat["conversation"]) == []


# --- duplicated keys: the value authorized is the value acted on -------------------------------

def test_duplicated_sender_id_is_authorized_as_the_one_acted_on(client, tokens, pg, chat):
    alice, bob = str(chat["alice"]), str(chat["bob"])
    path = f"/v1/conversations/{chat['conversation']}/messages"
    spoof = f'{{"sender_id": "{alice}", "sender_id": "{bob}", "body": "hi"}}'
    response = client.post(path, data=spoof, content_type="application/json",
                           headers=tokens.user(chat["alice"]))
    assert_response_problem(response, 403)  # the last one counts, and alice may not send as bob
    assert senders(pg, chat["conversation"]) == []
    own = f'{{"sender_id": "{bob}", "sender_id": "{alice}", "body": "hi"}}'
    response = client.post(path, data=own, content_type="application/json",
                           headers=tokens.user(chat["alice"]))
    assert response.status_code == 201
    assert senders(pg, chat["conversation"]) == [alice]


def test_duplicated_user_id_on_mark_read_is_authorized_as_the_one_acted_on(client, tokens, chat):
    path = f"/v1/conversations/{chat['conversation']}/read"
    data = f'{{"user_id": "{chat["alice"]}", "user_id": "{chat["bob"]}"}}'
    response = client.post(path, data=data, content_type="application/json",
                           headers=tokens.user(chat["alice"]))
    assert_response_problem(response, 403)


# --- tokens never reach the logs ---------------------------------------------------------------

@pytest.fixture
def logged_server(server_env, pg, redis_client, private_redis, tmp_path):
    """The service under gunicorn logging at debug level to a file, on a Redis the test may stop
    (so that the warnings of a Redis outage are in the logs too)."""
    env = {**server_env, "REDIS_URL": private_redis.url, "COUNTS_LOG_LEVEL": "debug"}
    server = Gunicorn(env, log_path=tmp_path / "gunicorn.log").start()
    yield server
    server.stop()


def secrets_of(token: str) -> list[str]:
    """The token and, for a JWT, its signature: neither may be written anywhere."""
    return [token, token.rsplit(".", 1)[-1]]


def test_tokens_never_appear_in_the_logs(logged_server, private_redis, subtests):
    port, user, other = logged_server.port, new_user(), new_user()
    good = {"user": mint_token(SECRET, str(user)),
            "service": mint_token(SECRET, "billing", service=True)}
    bad = {"expired": mint_token(SECRET, str(user), ttl=-60),
           "other key": mint_token("another-secret-0123456789-0123456789", str(user)),
           "truncated": good["user"][:-5] + "AAAAA",
           "not a JWT": "opaque-" + uuid.uuid4().hex}
    bearer = {name: {"Authorization": f"Bearer {token}"} for name, token in {**good, **bad}.items()}
    # Sent by clients that get auth wrong: gunicorn, not the app, is the first to see these.
    # (Other subjects: tokens minted in the same second for the same claims are the same string.)
    as_basic_user = mint_token(SECRET, str(new_user()))  # `curl -u "$TOKEN:"`
    in_a_broken_line = mint_token(SECRET, str(new_user()))  # a header line without its colon

    def send(request: bytes) -> int:
        return exchange(port, request).status

    counts = COUNTS.format(user)
    assert send(raw_request("GET", counts, bearer["user"])) == 200
    assert send(raw_request("GET", counts, {**bearer["user"], "If-None-Match": "*"})) == 304
    assert send(raw_request("GET", COUNTS.format(other), bearer["user"])) == 403
    for name in bad:
        assert send(raw_request("GET", counts, {**bearer[name], "If-None-Match": "*"})) == 401, name
        assert send(json_request("POST", "/v1/markers/bump", bearer[name], b"{}")) == 401, name
    assert send(raw_request("GET", counts, {"Authorization": good["user"]})) == 401  # no scheme
    assert send(json_request("POST", "/v1/markers/bump", bearer["service"], b'{"user_ids": 1}')) == 422
    assert send(json_request("POST", "/v1/markers/bump", bearer["service"], b"{nope")) == 400
    basic = base64.b64encode(f"{as_basic_user}:".encode()).decode()
    assert send(raw_request("GET", counts, {"Authorization": f"Basic {basic}"})) == 401
    broken = (f"GET {counts} HTTP/1.1\r\nHost: x\r\nAuthorization Bearer {in_a_broken_line}\r\n"
              "Connection: close\r\n\r\n").encode()
    assert send(broken) == 400
    private_redis.stop()  # from here on, every request logs a Redis warning
    assert send(raw_request("GET", counts, {**bearer["user"], "If-None-Match": "*"})) == 200
    bump = json.dumps({"user_ids": [str(user)]}).encode()
    assert send(json_request("POST", "/v1/markers/bump", bearer["service"], bump)) == 202
    logged_server.stop()  # flushes and closes the log
    logs = logged_server.log_path.read_bytes().decode("latin-1")
    assert "redis failed" in logs and "Invalid request" in logs  # the capture works

    tokens = {**good, **bad, "sent as a Basic user name": as_basic_user,
              # gunicorn's "Invalid request" warning quotes a header line it cannot parse whole.
              "in a header line gunicorn cannot parse": in_a_broken_line}
    for name, token in tokens.items():
        with subtests.test(name):
            for secret in secrets_of(token):
                assert secret not in logs, f"the {name} token is in the logs"
