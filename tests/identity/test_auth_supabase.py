"""Tokens as Supabase (and other OIDC providers) issue them: JWKS keys (ES256, RS256, EdDSA), legacy
HS256 with `aud`, audiences and issuers, the leeway, and the attacks a careful verifier refuses."""

import base64
import hashlib
import hmac
import json
import time
import uuid
from types import SimpleNamespace

import jwt
import pytest
import requests

from counts.errors import DependencyUnavailable, Unauthorized
from counts.identity import SERVICE_ROLE, TokenVerifier, tokens
from counts.identity.jwks import KeySet
from tests.support.api import new_user
from tests.support.identity import (
    ISSUER,
    LEGACY_SECRET,
    JwksServer,
    SigningKey,
    legacy_service_role_key,
    supabase_claims,
)
from tests.support.services import Gunicorn

USER = uuid.UUID("5d1c2b3a-4e5f-4a6b-8c7d-9e0f1a2b3c4d")
LEEWAY = 30


def bearer(token: str) -> str:
    return f"Bearer {token}"


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def hmac_forged(header: dict, claims: dict, secret: bytes) -> str:
    """An HS256 token signed by hand with any bytes as the secret (PyJWT refuses a PEM as one)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def reheadered(token: str, header: dict) -> str:
    """The token with its header replaced (the signature kept)."""
    _, payload, signature = token.split(".")
    return f"{b64(json.dumps(header).encode())}.{payload}.{signature}"


@pytest.fixture
def keyset(provider):
    keys = KeySet(provider.url)
    yield keys
    keys.close()


@pytest.fixture
def verifier(keyset) -> TokenVerifier:
    """Configured as docs/attach.md says for a Supabase project: JWKS, issuer, legacy secret."""
    return TokenVerifier(LEGACY_SECRET, keyset, issuer=ISSUER, leeway=LEEWAY)


@pytest.fixture
def ec_key(provider) -> SigningKey:
    return provider.keys[0]


# --- accepted ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["EC", "RSA", "Ed25519"])
def test_supabase_user_token_signed_by_a_published_key(provider, verifier, kind):
    key = SigningKey(kind)
    provider.publish(*provider.keys, key)
    claims = supabase_claims(USER)
    principal = verifier.verify(bearer(key.sign(claims)))
    assert (principal.user_id, principal.is_service, principal.key_id) == (USER, False, key.kid)
    assert principal.expires_at == claims["exp"] + LEEWAY


def test_legacy_hs256_supabase_token_with_aud(verifier):
    principal = verifier.verify(bearer(jwt.encode(supabase_claims(USER), LEGACY_SECRET, "HS256")))
    assert (principal.user_id, principal.key_id) == (USER, None)


def test_legacy_service_role_key_is_a_service_without_aud_or_our_issuer(verifier):
    principal = verifier.verify(bearer(legacy_service_role_key()))
    assert principal.is_service
    assert principal.user_id is None


@pytest.mark.parametrize("changes", [
    {"aud": None, "iss": "elsewhere"},  # the provider signed it for another app
    {"aud": "some-other-api", "iss": "https://elsewhere/"},
    {},  # even with our audience and issuer: the provider's keys sign users only
], ids=["no aud, other iss", "other aud and iss", "our aud and iss"])
def test_service_role_signed_by_the_provider_is_no_service(verifier, ec_key, changes):
    claims = supabase_claims("any", role=SERVICE_ROLE, **changes)
    with pytest.raises(Unauthorized, match="signed with COUNTS_JWT_SECRET"):
        verifier.verify(bearer(ec_key.sign(claims)))


def test_service_role_signed_by_the_provider_without_a_role_check_is_still_a_user(keyset, ec_key):
    verifier = TokenVerifier(None, keyset, audience=("counts",), issuer=ISSUER, user_role=None)
    claims = supabase_claims(USER, role=SERVICE_ROLE, aud="counts")
    principal = verifier.verify(bearer(ec_key.sign(claims)))
    assert (principal.is_service, principal.user_id) == (False, USER)


def test_a_service_audience_opts_provider_tokens_of_our_issuer_in(keyset, ec_key):
    """COUNTS_JWT_SERVICE_AUDIENCE: machine tokens (an OAuth client-credentials grant) whose aud
    names the service audience and whose iss is ours are services'; nothing else is."""
    verifier = TokenVerifier(None, keyset, audience=("counts",), issuer=ISSUER,
                             service_audience=("counts-service",))
    machine = {"sub": "chat-backend@clients", "iss": ISSUER, "aud": "counts-service",
               "exp": int(time.time()) + 60}
    assert verifier.verify(bearer(ec_key.sign(machine))).is_service
    assert verifier.verify(bearer(ec_key.sign({**machine, "aud": ["x", "counts-service"]}))).is_service
    with pytest.raises(Unauthorized):
        verifier.verify(bearer(ec_key.sign({**machine, "iss": "https://elsewhere/"})))
    with pytest.raises(Unauthorized):
        verifier.verify(bearer(ec_key.sign({**machine, "aud": "counts"})))  # a user's audience
    with pytest.raises(ValueError, match="issuer"):
        TokenVerifier(None, keyset, service_audience=("counts-service",))


def test_a_provider_service_role_token_is_refused_by_every_service_endpoint(app_factory, provider,
                                                                           ec_key):
    client = app_factory(COUNTS_JWT_SECRET=LEGACY_SECRET, COUNTS_JWKS_URL=provider.url,
                         COUNTS_JWT_ISSUER=ISSUER).test_client()
    forged = {"Authorization": bearer(ec_key.sign(supabase_claims(
        "any", role=SERVICE_ROLE, aud="some-other-api", iss="https://elsewhere/")))}
    other = new_user()
    attempts = [client.post("/v1/unread-counts/batch", headers=forged,
                            json={"users": [{"user_id": str(other), "etag": None}]}),
                client.post("/v1/markers/bump", headers=forged, json={"user_ids": [str(other)]}),
                client.get(f"/v1/users/{other}/unread-counts", headers=forged),
                client.get(f"/v1/users/{other}/devices", headers=forged)]
    assert [response.status_code for response in attempts] == [401] * 4
    legacy = {"Authorization": bearer(legacy_service_role_key())}
    assert client.post("/v1/markers/bump", headers=legacy,
                       json={"user_ids": [str(other)]}).status_code == 200


def test_an_anonymous_sign_in_is_a_user(verifier, ec_key):
    claims = supabase_claims(USER, is_anonymous=True, email="", amr=[{"method": "anonymous",
                                                                      "timestamp": 1}])
    assert verifier.verify(bearer(ec_key.sign(claims))).user_id == USER


def test_aud_may_be_a_list(verifier, ec_key):
    claims = supabase_claims(USER, aud=["counts", "authenticated"])
    assert verifier.verify(bearer(ec_key.sign(claims))).user_id == USER


def test_a_configured_audience_list_accepts_each_and_requires_aud(keyset, ec_key):
    verifier = TokenVerifier(LEGACY_SECRET, keyset, audience=("counts", "mobile"))
    for aud in ("counts", "mobile"):
        assert verifier.verify(bearer(ec_key.sign(supabase_claims(USER, aud=aud)))).user_id == USER
    with pytest.raises(Unauthorized, match="audience"):
        verifier.verify(bearer(ec_key.sign(supabase_claims(USER))))  # "authenticated"
    no_aud = jwt.encode(supabase_claims(USER, aud=None), LEGACY_SECRET, "HS256")
    with pytest.raises(Unauthorized, match="no 'aud'"):
        verifier.verify(bearer(no_aud))  # with COUNTS_JWT_AUDIENCE set, even the secret's need aud


def test_a_secret_signed_token_without_aud_is_accepted_while_the_audience_is_unset(keyset):
    token = bearer(tokens.mint_token(LEGACY_SECRET, str(USER)))  # as minted before aud was checked
    assert TokenVerifier(LEGACY_SECRET, keyset).verify(token).user_id == USER
    with pytest.raises(Unauthorized, match="no 'aud'"):
        TokenVerifier(LEGACY_SECRET, keyset, audience=("authenticated",)).verify(token)


def test_providers_without_a_role_claim(keyset, ec_key):
    """Keycloak, Cognito, Auth0: no `role`; COUNTS_JWT_USER_ROLE empty makes UUID subs users."""
    claims = {"sub": str(USER), "aud": "counts", "iss": ISSUER, "exp": int(time.time()) + 60,
              "typ": "Bearer", "azp": "mobile-app", "realm_access": {"roles": ["user"]}}
    token = bearer(ec_key.sign(claims))
    with pytest.raises(Unauthorized, match="role"):
        TokenVerifier(None, keyset, audience=("counts",)).verify(token)
    verifier = TokenVerifier(None, keyset, audience=("counts",), issuer=ISSUER, user_role=None)
    assert verifier.verify(token).user_id == USER
    with pytest.raises(Unauthorized, match="audience"):
        verifier.verify(bearer(ec_key.sign({**claims, "aud": "account"})))


def test_expired_within_the_leeway_is_accepted_until_the_leeway_ends(verifier, ec_key, monkeypatch):
    now = int(time.time())
    claims = supabase_claims(USER, iat=now - 3600, exp=now - 10)
    token = bearer(ec_key.sign(claims))
    principal = verifier.verify(token)  # 10 s past exp: within 30 s of clock skew
    assert principal.expires_at == now - 10 + LEEWAY
    monkeypatch.setattr(tokens, "time", SimpleNamespace(time=lambda: now + LEEWAY))
    with pytest.raises(Unauthorized, match="expired"):
        verifier.verify(token)  # the cached token ends with the leeway too


def test_an_iat_within_the_leeway_in_the_future_is_accepted(verifier, ec_key):
    now = int(time.time())
    assert verifier.verify(bearer(ec_key.sign(supabase_claims(USER, iat=now + 20)))).user_id == USER


# --- refused -----------------------------------------------------------------------------------

def _attacks(provider):
    """(name, token, why) for tokens a verifier configured for the provider must refuse."""
    ec, rsa = provider.keys
    stranger = SigningKey("EC")
    now = int(time.time())
    attacker_jwks = JwksServer(stranger).start()
    provider.attacker = attacker_jwks
    header, _, signature = ec.sign(supabase_claims(USER)).split(".")
    forged_payload = b64(json.dumps(supabase_claims(USER, role=SERVICE_ROLE)).encode())
    legacy = jwt.encode(supabase_claims(USER), LEGACY_SECRET, "HS256")
    bad_signature, not_published = "Signature verification failed", "is not published"
    return [
        ("wrong aud", ec.sign(supabase_claims(USER, aud="another-api")), "audience"),
        ("anon key's aud and role", ec.sign(supabase_claims(USER, aud="anon", role="anon")), "role"),
        ("wrong iss", ec.sign(supabase_claims(USER, iss="https://other.supabase.co/auth/v1")), "iss"),
        ("no aud, asymmetric", ec.sign(supabase_claims(USER, aud=None)), "no 'aud'"),
        ("expired past the leeway", ec.sign(supabase_claims(USER, iat=now - 7200, exp=now - 31)),
         "expired"),
        ("not yet valid", ec.sign(supabase_claims(USER, nbf=now + 600)), "not yet valid"),
        ("issued in the future", ec.sign(supabase_claims(USER, iat=now + 600)), "not yet valid"),
        ("alg none", jwt.encode(supabase_claims(USER), None, algorithm="none"), "'none'"),
        ("alg none with kid", jwt.encode(supabase_claims(USER), None, algorithm="none",
                                         headers={"kid": ec.kid}), "'none'"),
        ("HS256 with the EC public PEM as secret", hmac_forged(
            {"alg": "HS256", "typ": "JWT", "kid": ec.kid}, supabase_claims(USER), ec.public_pem()),
         bad_signature),
        ("HS256 with the RSA public PEM as secret", hmac_forged(
            {"alg": "HS256", "kid": rsa.kid}, supabase_claims(USER), rsa.public_pem()),
         bad_signature),
        ("HS256 with the JWK as secret", hmac_forged(
            {"alg": "HS256", "kid": ec.kid}, supabase_claims(USER), json.dumps(ec.jwk()).encode()),
         bad_signature),
        ("RS256 header on the EC key's kid", rsa.sign(supabase_claims(USER), kid=ec.kid),
         "does not match the key's algorithm"),
        ("ES384 header on an ES256 key", reheadered(ec.sign(supabase_claims(USER)),
                                                    {"alg": "ES384", "kid": ec.kid}),
         "does not match the key's algorithm"),
        ("signed by a stranger under a published kid",
         stranger.sign(supabase_claims(USER), kid=ec.kid), bad_signature),
        ("kid not published", stranger.sign(supabase_claims(USER)), not_published),
        ("no kid", jwt.encode(supabase_claims(USER), ec.private, algorithm="ES256"), "no 'kid'"),
        ("its own key in the header", stranger.sign(supabase_claims(USER), jwk=stranger.jwk()),
         not_published),
        ("its own JWKS URL in the header",
         stranger.sign(supabase_claims(USER), jku=attacker_jwks.url), not_published),
        ("HS512 header on a secret-signed token", reheadered(legacy, {"alg": "HS512"}), "'HS512'"),
        ("payload changed after signing", f"{header}.{forged_payload}.{signature}", bad_signature),
        ("non-UUID sub", ec.sign(supabase_claims("alice")), "UUID"),
        ("legacy secret, wrong aud",
         jwt.encode(supabase_claims(USER, aud="x"), LEGACY_SECRET, "HS256"), "audience"),
    ]


@pytest.fixture
def attacks(provider):
    triples = _attacks(provider)
    yield triples
    provider.attacker.stop()


def test_every_attack_is_refused_for_its_reason_without_echoing_the_token(verifier, attacks,
                                                                           provider):
    verifier.verify(bearer(provider.keys[0].sign(supabase_claims(USER))))  # keys fetched
    for name, token, why in attacks:
        with pytest.raises((Unauthorized, DependencyUnavailable)) as refused:
            verifier.verify(bearer(token))
        detail = refused.value.detail
        if isinstance(refused.value, DependencyUnavailable):
            # A kid never seen, after the one fetch a minute unknown kids may cause: 503, as a key
            # published since would get, never accepted.
            assert why == "is not published", (name, detail)
        else:
            assert why in detail, (name, detail)
        assert all(part not in detail for part in token.split(".") if len(part) > 8), name
    assert provider.attacker.fetches == 0  # a header's jku is never fetched


def test_the_endpoint_answers_each_attack_401_problem(app_factory, provider, attacks):
    client = app_factory(COUNTS_JWT_SECRET=LEGACY_SECRET, COUNTS_JWKS_URL=provider.url,
                         COUNTS_JWT_ISSUER=ISSUER, COUNTS_JWT_LEEWAY=LEEWAY).test_client()
    for name, token, why in attacks:
        response = client.get(f"/v1/users/{USER}/unread-counts",
                              headers={"Authorization": bearer(token), "If-None-Match": "*"})
        # 503 only for a kid never seen once the minute's fetch for unknown kids is spent.
        allowed = {401, 503} if why == "is not published" else {401}
        assert response.status_code in allowed, name
        assert response.mimetype == "application/problem+json"
        assert token not in response.get_data(as_text=True)


def test_without_a_secret_hs256_is_refused_even_when_signed_right(keyset):
    token = jwt.encode(supabase_claims(USER), LEGACY_SECRET, "HS256")
    with pytest.raises(Unauthorized, match="HS256 tokens are not accepted"):
        TokenVerifier(None, keyset, issuer=ISSUER).verify(bearer(token))


def test_without_a_jwks_asymmetric_tokens_are_refused(ec_key):
    with pytest.raises(Unauthorized, match="no JWKS URL"):
        TokenVerifier(LEGACY_SECRET).verify(bearer(ec_key.sign(supabase_claims(USER))))


# --- through the app ---------------------------------------------------------------------------

def poll_twice(get, user, token) -> list[int]:
    """GET the user's counts, then again with the ETag: the statuses."""
    headers = {"Authorization": bearer(token)}
    first = get(f"/v1/users/{user}/unread-counts", headers=headers)
    second = get(f"/v1/users/{user}/unread-counts",
                 headers={**headers, "If-None-Match": first.headers["ETag"]})
    return [first.status_code, second.status_code]


def test_supabase_tokens_poll_200_then_304_through_the_app(app_factory, provider, ec_key):
    client = app_factory(COUNTS_JWT_SECRET=LEGACY_SECRET, COUNTS_JWKS_URL=provider.url,
                         COUNTS_JWT_ISSUER=ISSUER, COUNTS_JWT_LEEWAY=LEEWAY).test_client()
    es256 = ec_key.sign(supabase_claims(USER))
    legacy = jwt.encode(supabase_claims(USER), LEGACY_SECRET, "HS256")
    assert poll_twice(client.get, USER, es256) == [200, 304]
    assert poll_twice(client.get, USER, legacy) == [200, 304]


def test_a_token_whose_key_cannot_be_fetched_is_503_with_retry_after(app_factory, provider,
                                                                     ec_key):
    client = app_factory(COUNTS_JWKS_URL=provider.url, COUNTS_JWT_ISSUER=ISSUER).test_client()
    provider.stop()
    response = client.get(f"/v1/users/{USER}/unread-counts", headers={
        "Authorization": bearer(ec_key.sign(supabase_claims(USER))), "If-None-Match": "*"})
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert response.headers["Retry-After"]
    assert "signing keys could not be fetched" in response.get_json()["detail"]


def test_supabase_tokens_poll_200_then_304_under_gunicorn(provider, server_env, pg, redis_client):
    """Done when: a Supabase-shaped ES256 token from a JWKS, and a legacy HS256 one with aud, poll
    and get 200 then 304 from the real service configured as `make run` is, plus a rotation."""
    env = {key: value for key, value in server_env.items() if key != "COUNTS_JWT_LEEWAY"}
    env.update(COUNTS_JWT_SECRET=LEGACY_SECRET, COUNTS_JWKS_URL=provider.url,
               COUNTS_JWT_ISSUER=ISSUER)
    server = Gunicorn(env).start()
    try:
        service = {"Authorization": bearer(legacy_service_role_key())}
        alice, bob, carol = new_user(), new_user(), new_user()
        created = requests.post(f"{server.url}/v1/conversations", headers=service, timeout=10,
                                json={"member_ids": [str(alice), str(bob), str(carol)]})
        assert created.status_code == 201, created.text
        conversation = created.json()["conversation_id"]
        sent = requests.post(f"{server.url}/v1/conversations/{conversation}/messages", timeout=10,
                             headers=service, json={"sender_id": str(carol), "body": "hi"})
        assert sent.status_code == 201, sent.text

        def get(path, **kwargs):
            return requests.get(server.url + path, timeout=10, **kwargs)

        es256 = provider.keys[0].sign(supabase_claims(alice))
        rs256 = provider.keys[1].sign(supabase_claims(alice))
        legacy = jwt.encode(supabase_claims(bob), LEGACY_SECRET, "HS256")
        assert poll_twice(get, alice, es256) == [200, 304]
        assert poll_twice(get, alice, rs256) == [200, 304]
        assert poll_twice(get, bob, legacy) == [200, 304]
        assert get(f"/v1/users/{alice}/unread-counts",
                   headers={"Authorization": bearer(es256)}).json()["total"] == 1
        rotated = SigningKey("EC")
        provider.publish(rotated, *provider.keys)
        assert poll_twice(get, carol, rotated.sign(supabase_claims(carol))) == [200, 304]
        assert requests.get(f"{server.admin_url}/readyz", timeout=10).json()["jwks"] == "ok"
        assert get(f"/v1/users/{alice}/unread-counts",
                   headers={"Authorization": bearer(es256.replace(".", ".x", 1))}).status_code == 401
    finally:
        server.stop()
