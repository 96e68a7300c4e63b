"""Who is calling: bearer JWTs, checked against a shared secret (HS256) and/or a provider's JWKS.

`tokens.py` is the verifier (algorithm pinning, Supabase's claims, the verified-token cache) and
`mint_token`; `jwks.py` keeps the identity provider's public keys: fetched off the request path,
cached, refreshed, and fetched for an unknown `kid` at most once a minute.
"""

from counts.identity.tokens import (
    DEFAULT_AUDIENCE,
    SERVICE_ROLE,
    USER_ROLE,
    Principal,
    TokenVerifier,
    mint_token,
)

__all__ = ["DEFAULT_AUDIENCE", "SERVICE_ROLE", "USER_ROLE", "Principal", "TokenVerifier",
           "mint_token"]
