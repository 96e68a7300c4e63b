"""The service's API as a test (or a simulated client) calls it: tokens, the endpoints, new
users, problem bodies, and the OpenAPI document's schemas."""

import uuid
from http import HTTPStatus

import jsonschema_rs

from counts.identity import mint_token
from tests.support.environment import SECRET

# Titles are reason phrases as RFC 9110 spells them (two renamed since Python's http module).
REASON_PHRASES = {413: "Content Too Large", 422: "Unprocessable Content"}


class Tokens:
    """Authorization headers for users and services."""

    def user(self, user_id) -> dict[str, str]:
        return {"Authorization": f"Bearer {mint_token(SECRET, str(user_id))}"}

    def service(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {mint_token(SECRET, 'test-service', service=True)}"}


class Api:
    """The service's endpoints, on a Flask test client or a services.LiveClient."""

    def __init__(self, client, tokens: Tokens):
        self.client, self.tokens = client, tokens

    def conversation(self, *members) -> str:
        response = self.client.post("/v1/conversations", headers=self.tokens.service(),
                                    json={"member_ids": [str(m) for m in members]})
        assert response.status_code == 201, response.get_json()
        return response.get_json()["conversation_id"]

    def send(self, conversation_id, sender, body="hello"):
        return self.client.post(f"/v1/conversations/{conversation_id}/messages",
                                headers=self.tokens.user(sender),
                                json={"sender_id": str(sender), "body": body})

    def thread(self, parent_id, *members, root_seq=None) -> str:
        body = {"member_ids": [str(m) for m in members], "parent_id": str(parent_id)}
        if root_seq is not None:
            body["root_seq"] = root_seq
        response = self.client.post("/v1/conversations", headers=self.tokens.service(), json=body)
        assert response.status_code == 201, response.get_json()
        return response.get_json()["conversation_id"]

    def mention(self, conversation_id, sender, user_ids=(), everyone=False, as_service=False):
        """Send a message mentioning `user_ids` (or everyone)."""
        headers = self.tokens.service() if as_service else self.tokens.user(sender)
        return self.client.post(f"/v1/conversations/{conversation_id}/messages", headers=headers,
                                json={"sender_id": str(sender), "body": "hey",
                                      "mentions": {"user_ids": [str(u) for u in user_ids],
                                                   "all": everyone}})

    def notify(self, conversation_id, user, level, headers=None):
        return self.client.patch(f"/v1/conversations/{conversation_id}/members/{user}",
                                 headers=headers or self.tokens.user(user), json={"notify": level})

    def unread(self, conversation_id, user, from_seq=None):
        body = {"user_id": str(user)}
        if from_seq is not None:
            body["from_seq"] = from_seq
        return self.client.post(f"/v1/conversations/{conversation_id}/unread",
                                headers=self.tokens.user(user), json=body)

    def read(self, conversation_id, user, up_to_seq=None):
        body = {"user_id": str(user)}
        if up_to_seq is not None:
            body["up_to_seq"] = up_to_seq
        return self.client.post(f"/v1/conversations/{conversation_id}/read",
                                headers=self.tokens.user(user), json=body)

    def counts(self, user, etag=None, method="get"):
        headers = self.tokens.user(user)
        if etag is not None:
            headers["If-None-Match"] = etag
        return getattr(self.client, method)(f"/v1/users/{user}/unread-counts", headers=headers)


def new_user() -> uuid.UUID:
    return uuid.uuid4()


def user_token(user) -> str:
    """A user's bearer token (the JWT alone, as a client holds it)."""
    return mint_token(SECRET, str(user))


def admin_client(app):
    """A test client of the app's operators' address (counts.admin: /metrics, /readyz in full)."""
    return app.extensions["counts.admin"].test_client()


def documented(app, schema: str, body: dict) -> bool:
    """Whether `body` conforms to the named schema of the app's OpenAPI document."""
    document = app.test_client().get("/openapi.json").get_json()
    return jsonschema_rs.validator_for({"$ref": f"#/components/schemas/{schema}",
                                        "components": as_json_schema(document["components"])},
                                       ).is_valid(body)


def as_json_schema(node):
    """OpenAPI 3.0's `nullable: true` spelled as JSON Schema understands it (a null type)."""
    if isinstance(node, list):
        return [as_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: as_json_schema(value) for key, value in node.items()}
    if node.pop("nullable", False) and "type" in node:
        node["type"] = [node["type"], "null"]
    return node


def assert_problem(response, status: int) -> dict:
    """The response is an RFC 9457 problem+json with this status, titled with its reason phrase
    (one spelling for every error, ours and Werkzeug's)."""
    assert response.status_code == status, response.data[:300]
    assert response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert {"type", "title", "status", "detail"} <= set(problem)
    assert problem["status"] == status
    assert problem["title"] == REASON_PHRASES.get(status, HTTPStatus(status).phrase)
    return problem
