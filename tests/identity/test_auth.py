"""Bearer tokens: counts.identity.TokenVerifier on its own, and the 401s the endpoints answer."""

import base64
import hashlib
import hmac
import json
import time
import uuid
from types import SimpleNamespace

import jwt
import pytest

from counts import identity
from counts.errors import DependencyUnavailable, Unauthorized
from counts.identity import SERVICE_ROLE, USER_ROLE, TokenVerifier, tokens
from tests.support.environment import SECRET

OTHER_KEY = "another-secret-0123456789-0123456789"
USER = uuid.UUID("3f2b7c1e-9a4d-4c55-8e21-0d6f1b2a3c4d")


def claims(**changes) -> dict:
    """Valid user claims for USER, expiring in a minute, with `changes` (None removes a claim)."""
    now = int(time.time())
    base = {"sub": str(USER), "role": USER_ROLE, "iat": now, "exp": now + 60, **changes}
    return {k: v for k, v in base.items() if v is not None}


def signed(payload: dict, key: str = SECRET, **headers) -> str:
    """An HS256 token signed by PyJWT."""
    return jwt.encode(payload, key, algorithm="HS256", headers=headers or None)


def forged(header: dict, payload: dict, key: str = SECRET) -> str:
    """A token with any header, HMAC-SHA256-signed by hand (PyJWT would not sign it as asked)."""
    def part(value) -> str:
        raw = json.dumps(value).encode() if isinstance(value, dict) else value
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    signing_input = f"{part(header)}.{part(payload)}"
    signature = hmac.new(key.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{part(signature)}"


def bearer(token: str) -> str:
    return f"Bearer {token}"


@pytest.fixture
def verifier() -> TokenVerifier:
    return TokenVerifier(SECRET)


# --- accepted tokens ---------------------------------------------------------------------------

def test_user_token_gives_the_user(verifier):
    principal = verifier.verify(bearer(signed(claims())))
    assert principal.role == USER_ROLE
    assert principal.user_id == USER
    assert not principal.is_service


def test_service_token_gives_a_service_without_user(verifier):
    principal = verifier.verify(bearer(signed(claims(sub="billing", role=SERVICE_ROLE))))
    assert principal.is_service
    assert principal.user_id is None


def test_scheme_is_case_insensitive(verifier):
    assert verifier.verify(f"bearer {signed(claims())}").user_id == USER


def test_minted_token_round_trips(verifier):
    token = identity.mint_token(SECRET, str(USER), ttl=120)
    principal = verifier.verify(bearer(token))
    assert principal.user_id == USER
    assert 110 <= principal.expires_at - time.time() <= 120


# --- refused tokens ----------------------------------------------------------------------------

def _expired():
    now = int(time.time())
    return bearer(signed(claims(iat=now - 120, exp=now - 60)))


def _not_yet_valid():
    return bearer(signed(claims(nbf=int(time.time()) + 600)))


def _alg_none():
    return bearer(jwt.encode(claims(), None, algorithm="none"))


def _alg_none_with_signature():
    return bearer(forged({"alg": "none", "typ": "JWT"}, claims()))


def _other_key():
    return bearer(signed(claims(), key=OTHER_KEY))


def _header_says_rs256():
    return bearer(forged({"alg": "RS256", "typ": "JWT"}, claims()))


def _tampered_payload():
    header, _, signature = signed(claims()).split(".")
    payload = base64.urlsafe_b64encode(json.dumps(claims(role=SERVICE_ROLE)).encode())
    return bearer(f"{header}.{payload.rstrip(b'=').decode()}.{signature}")


BAD_AUTHORIZATION = [
    ("expired", _expired),
    ("nbf in the future", _not_yet_valid),
    ("alg none", _alg_none),
    ("alg none with an HMAC signature", _alg_none_with_signature),
    ("signed with another key", _other_key),
    ("header says RS256", _header_says_rs256),
    ("payload changed after signing", _tampered_payload),
    ("missing exp", lambda: bearer(signed(claims(exp=None)))),
    ("exp not a number", lambda: bearer(signed(claims(exp="tomorrow")))),
    ("missing sub", lambda: bearer(signed(claims(sub=None)))),
    ("non-UUID sub", lambda: bearer(signed(claims(sub="alice")))),
    ("unknown role anon", lambda: bearer(signed(claims(role="anon")))),
    ("missing role", lambda: bearer(signed(claims(role=None)))),
    ("Basic scheme", lambda: "Basic dXNlcjpwYXNz"),
    ("Basic scheme with a valid JWT", lambda: f"Basic {signed(claims())}"),
    ("token without scheme", lambda: signed(claims())),
    ("Bearer without token", lambda: "Bearer "),
    ("not a JWT", lambda: "Bearer not.a.jwt"),
    ("empty header", lambda: ""),
]


@pytest.mark.parametrize("authorization", [b[1] for b in BAD_AUTHORIZATION],
                         ids=[b[0] for b in BAD_AUTHORIZATION])
def test_verifier_refuses(verifier, authorization):
    with pytest.raises(Unauthorized):
        verifier.verify(authorization())


def test_verifier_refuses_a_missing_header(verifier):
    with pytest.raises(Unauthorized):
        verifier.verify(None)


@pytest.mark.parametrize("authorization", [b[1] for b in BAD_AUTHORIZATION],
                         ids=[b[0] for b in BAD_AUTHORIZATION])
def test_endpoint_answers_401_problem(client, authorization):
    headers = {"Authorization": authorization(), "If-None-Match": "*"}
    response = client.get(f"/v1/users/{USER}/unread-counts", headers=headers)
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["status"] == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("role", [USER_ROLE, SERVICE_ROLE])
def test_endpoint_accepts_valid_tokens(client, role):
    token = signed(claims(role=role))
    response = client.get(f"/v1/users/{USER}/unread-counts", headers={"Authorization": bearer(token)})
    assert response.status_code == 200
    assert response.get_json()["user_id"] == str(USER)


# --- the verified-token cache ------------------------------------------------------------------

def test_cached_token_is_refused_once_it_expires(verifier, monkeypatch):
    now = time.time()
    token = bearer(signed(claims(exp=int(now) + 2)))
    assert verifier.verify(token).user_id == USER  # verified, and now cached
    monkeypatch.setattr(tokens, "time", SimpleNamespace(time=lambda: now + 1))
    assert verifier.verify(token).user_id == USER
    monkeypatch.setattr(tokens, "time", SimpleNamespace(time=lambda: now + 3))
    with pytest.raises(Unauthorized):
        verifier.verify(token)


def test_cache_does_not_accept_a_token_signed_for_another_verifier():
    token = bearer(signed(claims(), key=OTHER_KEY))
    assert TokenVerifier(OTHER_KEY).verify(token).user_id == USER
    with pytest.raises(Unauthorized):
        TokenVerifier(SECRET).verify(token)


def test_full_cache_forgets_only_its_least_recently_used_token(monkeypatch):
    verifier = TokenVerifier(SECRET, cache_size=3)
    first, second, third, fourth = [bearer(signed(claims(sub=str(uuid.uuid4())))) for _ in range(4)]
    for token in (first, second, third):
        verifier.verify(token)
    verifier.verify(first)  # polled again: now the most recently used
    verifier.verify(fourth)  # the cache is full: one must go
    decoded = []
    real_decode = verifier._decode
    monkeypatch.setattr(verifier, "_decode", lambda t: decoded.append(t) or real_decode(t))
    for token in (first, third, fourth):
        verifier.verify(token)
    assert decoded == []  # the first was kept, being in use; the third and fourth too
    verifier.verify(second)
    assert len(decoded) == 1  # only the least recently used had been forgotten


def test_full_cache_still_verifies_new_tokens():
    verifier = TokenVerifier(SECRET, cache_size=2)
    users = [uuid.uuid4() for _ in range(5)]
    for user in users:
        assert verifier.verify(bearer(signed(claims(sub=str(user))))).user_id == user
    with pytest.raises(Unauthorized):
        verifier.verify(_other_key())


# --- one principal per request (invariant 13) --------------------------------------------------

class CountingVerifier:
    """The app's verifier, counting its calls; `failures` first calls raise `error`."""

    def __init__(self, real, failures: int = 0, error: Exception | None = None):
        self.real, self.failures, self.error, self.calls = real, failures, error, 0

    def __call__(self, authorization):
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return self.real(authorization)


def test_a_verifier_failing_then_succeeding_within_a_request_is_one_answer_not_a_500(app, tokens,
                                                                                    monkeypatch):
    """The 304 fast path's check raised (a JWKS fetch still pending) and the view's would have
    passed: the view read a marker the fast path never read, and answered 500. Now the request
    is authenticated once, and everything in it reads that one answer."""
    res = app.extensions["counts"]
    verifier = CountingVerifier(res.tokens.verify, failures=1, error=DependencyUnavailable(
        "The identity provider's signing keys could not be fetched; try again shortly."))
    monkeypatch.setattr(res.tokens, "verify", verifier)
    user = uuid.uuid4()
    url = f"/v1/users/{user}/unread-counts"
    client = app.test_client()
    refused = client.get(url, headers={**tokens.user(user), "If-None-Match": '"anything"'})
    assert refused.status_code == 503
    assert refused.mimetype == "application/problem+json"
    assert refused.headers["Retry-After"]
    assert verifier.calls == 1
    answered = client.get(url, headers=tokens.user(user))
    assert (answered.status_code, answered.get_json()["total"]) == (200, 0)
    assert verifier.calls == 2


@pytest.mark.parametrize(("method", "path"), [
    ("get", "/v1/users/{user}/unread-counts"),  # through the 304 fast path, then the view
    ("get", "/v1/users/{user}/devices"),
    ("post", "/v1/users/{user}/stream-tickets"),
])
def test_each_request_verifies_its_token_once(app, tokens, monkeypatch, method, path):
    res = app.extensions["counts"]
    verifier = CountingVerifier(res.tokens.verify)
    monkeypatch.setattr(res.tokens, "verify", verifier)
    user = uuid.uuid4()
    response = getattr(app.test_client(), method)(path.format(user=user), headers=tokens.user(user))
    assert response.status_code in (200, 201)
    assert verifier.calls == 1
