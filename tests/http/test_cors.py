"""CORS (COUNTS_CORS_ORIGINS): preflights, and the headers on every answer, 304s before Flask too."""

import pytest

from counts.http.middleware.cors import EXPOSE_HEADERS
from tests.support.api import new_user

ORIGIN = "https://app.example"


@pytest.fixture
def cors_client(app_factory):
    return app_factory(COUNTS_CORS_ORIGINS=[ORIGIN, "http://127.0.0.1:9"]).test_client()


def allowed(response) -> bool:
    """Whether the answer lets a page from ORIGIN read it, exposing what it must."""
    return (response.headers.get("Access-Control-Allow-Origin") == ORIGIN
            and response.headers.get("Access-Control-Expose-Headers") == EXPOSE_HEADERS
            and "Origin" in response.headers.getlist("Vary"))


def test_preflight_allows_the_methods_and_headers_a_client_uses(cors_client):
    user = new_user()
    response = cors_client.options(f"/v1/users/{user}/unread-counts", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization, if-none-match, prefer"})
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    allowed_headers = response.headers["Access-Control-Allow-Headers"].lower()
    for header in ("authorization", "if-none-match", "prefer", "content-type", "x-request-id"):
        assert header in allowed_headers
    assert set(response.headers["Access-Control-Allow-Methods"].split(", ")) >= {"GET", "POST"}
    assert "Origin" in response.headers.getlist("Vary")


def test_every_answer_carries_cors_even_the_304_answered_before_flask(cors_client, tokens):
    user = new_user()
    auth = {**tokens.user(user), "Origin": ORIGIN}
    ok = cors_client.get(f"/v1/users/{user}/unread-counts", headers=auth)
    assert ok.status_code == 200 and allowed(ok)
    not_modified = cors_client.get(f"/v1/users/{user}/unread-counts",
                                   headers={**auth, "If-None-Match": ok.headers["ETag"]})
    assert not_modified.status_code == 304 and allowed(not_modified)
    assert "Authorization" in not_modified.headers.getlist("Vary")  # its own Vary is kept
    problem = cors_client.get(f"/v1/users/{user}/unread-counts", headers={"Origin": ORIGIN})
    assert problem.status_code == 401 and allowed(problem)
    assert problem.headers["Content-Type"] == "application/problem+json"
    ticket = cors_client.post(f"/v1/users/{user}/stream-tickets", headers=auth)
    assert ticket.status_code == 201 and allowed(ticket)


def test_another_origin_gets_no_cors_but_vary(cors_client, tokens):
    user = new_user()
    response = cors_client.get(f"/v1/users/{user}/unread-counts",
                               headers={**tokens.user(user), "Origin": "https://evil.example"})
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Origin" in response.headers.getlist("Vary")
    preflight = cors_client.options(f"/v1/users/{user}/unread-counts", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
    assert "Access-Control-Allow-Origin" not in preflight.headers


def test_cors_is_off_by_default(client, tokens):
    user = new_user()
    response = client.get(f"/v1/users/{user}/unread-counts",
                          headers={**tokens.user(user), "Origin": ORIGIN})
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Origin" not in response.headers.getlist("Vary")


def test_star_allows_any_origin(app_factory, tokens):
    client = app_factory(COUNTS_CORS_ORIGINS=["*"]).test_client()
    user = new_user()
    response = client.get(f"/v1/users/{user}/unread-counts",
                          headers={**tokens.user(user), "Origin": "http://localhost:3000"})
    assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
