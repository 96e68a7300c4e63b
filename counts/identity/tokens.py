"""Bearer JWTs as identity providers issue them (Supabase first), and the verified-token cache.

Key sources are pinned by algorithm: HS256 is checked against COUNTS_JWT_SECRET and nothing
else; the asymmetric algorithms against the key the JWKS publishes under the token's `kid`, and
only with the algorithm that key is for. A token "signed" HS256 with a public key as the secret,
or with `alg: none`, or carrying its own key in its header, never verifies.

Claims follow Supabase. Service rights come from this deployment's own secret: an HS256 token
with `role: service_role` is a trusted backend service, accepted on its signature alone
(Supabase's legacy service_role key has `iss: supabase` and no `aud`). A token signed by the
identity provider's keys is a user token whatever its `role` says: a provider shared with other
apps can sign that claim for someone else. Only when the operator opts in
(COUNTS_JWT_SERVICE_AUDIENCE) is a provider token a service's, and then only with `iss`
COUNTS_JWT_ISSUER and `aud` that service audience. A user token has `role` the user role
(`authenticated`; not checked when configured empty, for providers without a `role` claim), `sub`
the user's UUID, `aud` one of COUNTS_JWT_AUDIENCE, `iss` COUNTS_JWT_ISSUER when set.

A user token without `aud` is accepted only when it was signed with the secret and
COUNTS_JWT_AUDIENCE is unset. The secret is this deployment's own, so what it signed was meant for
it, and tokens minted before audiences were checked keep working; a provider's asymmetric keys
sign tokens for many services, so those tokens must name ours. Setting COUNTS_JWT_AUDIENCE
requires `aud` everywhere.
"""

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import jwt

from counts.errors import Unauthorized
from counts.identity.jwks import JWKS_ALGORITHMS, KeySet
from counts.settings import DEFAULT_AUDIENCE, USER_ROLE, IdentitySettings

SERVICE_ROLE = "service_role"
SECRET_ALGORITHM = "HS256"  # noqa: S105 - an algorithm's name, not a secret


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user (with their id) or a trusted backend service."""

    role: str
    user_id: UUID | None
    # When this service stops accepting the token: its `exp` plus the leeway for clock skew.
    # Streams end then, so a reconnect with the same token is refused, not accepted and cut.
    expires_at: float
    # The JWKS key that signed it (None: the secret). A cached token whose key the provider
    # stopped publishing (revoked) is verified again, and refused.
    key_id: str | None = field(default=None, repr=False, compare=False)
    # str(user_id), made once per verified token rather than once per poll.
    user_text: str | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "user_text", None if self.user_id is None else str(self.user_id))

    @property
    def is_service(self) -> bool:
        """True for trusted backend services."""
        return self.role == SERVICE_ROLE


class TokenVerifier:
    """Verifies bearer tokens; remembers verified ones so a poller's repeated token costs a lookup.

    The cache key is the whole token, signature included, so only a token that verified once can
    hit; expiry is checked again on every hit, and so is its key's presence in the JWKS.
    """

    def __init__(self, secret: str | None = None, keys: KeySet | None = None, *,
                 audience: Sequence[str] | None = None, issuer: str | None = None,
                 leeway: float = 0, user_role: str | None = USER_ROLE,
                 service_audience: Sequence[str] | None = None, cache_size: int = 50_000):
        if secret is None and keys is None:
            raise ValueError("a token verifier needs a secret, a JWKS, or both")
        if service_audience and (keys is None or issuer is None):
            raise ValueError("a service audience needs a JWKS and an issuer")
        self.secret = secret
        self.keys = keys
        # None is "COUNTS_JWT_AUDIENCE unset": Supabase's audience, optional for secret-signed tokens.
        self.audience = frozenset(audience or (DEFAULT_AUDIENCE,))
        self.audience_required = audience is not None
        self.issuer = issuer
        self.leeway = leeway
        self.user_role = user_role
        # Provider tokens naming one of these (with our issuer) are services': an operator's opt-in.
        self.service_audience = frozenset(service_audience or ())
        self.cache_size = cache_size
        self._verified: OrderedDict[str, Principal] = OrderedDict()  # least recently used first
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, identity: IdentitySettings) -> "TokenVerifier":
        """The verifier the COUNTS_JWT_* and COUNTS_JWKS_* settings describe."""
        keys = KeySet(identity.jwks_url, identity.jwks_refresh) if identity.jwks_url else None
        return cls(identity.jwt_secret, keys, audience=identity.audience, issuer=identity.issuer,
                   leeway=identity.leeway, user_role=identity.user_role,
                   service_audience=identity.service_audience)

    def close(self) -> None:
        """Stop refreshing the JWKS (worker exit, tests)."""
        if self.keys is not None:
            self.keys.close()

    def verify(self, authorization: str | None) -> Principal:
        """The principal an `Authorization` header proves, or Unauthorized."""
        if not authorization:
            raise Unauthorized("Send an Authorization: Bearer <token> header.")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("The Authorization header must be 'Bearer <token>'.")
        token = token.strip()
        principal = self._verified.get(token)
        if principal is not None and principal.key_id is not None and self.keys is not None \
                and not self.keys.publishes(principal.key_id):
            principal = None  # its key was withdrawn from the JWKS: decode again (and refuse)
        if principal is None:
            principal = self._decode(token)
            with self._lock:
                if len(self._verified) >= self.cache_size and token not in self._verified:
                    # Forget the least recently used one: emptying the whole cache at the limit
                    # would make every poller pay a full decode at once whenever it filled.
                    self._verified.popitem(last=False)
                self._verified[token] = principal
        else:
            try:  # noqa: SIM105 - not contextlib.suppress: this runs on every poll
                self._verified.move_to_end(token)  # an active poller's token stays cached
            except KeyError:
                pass  # another thread evicted it just now; it is still verified for this call
        if principal.expires_at <= time.time():
            raise Unauthorized("The token has expired.")
        return principal

    def trusts(self, principal: Principal) -> bool:
        """Whether a principal verified earlier still stands: not expired, and signed by the
        secret or by a key the JWKS still publishes (a long-lived stream asks at each heartbeat)."""
        if principal.expires_at <= time.time():
            return False
        return principal.key_id is None or self.keys is None or self.keys.publishes(principal.key_id)

    def _decode(self, token: str) -> Principal:
        """Check the signature with the key its algorithm is pinned to, then expiry and claims."""
        try:
            header = jwt.get_unverified_header(token)
            key, key_id = self._key_for(header)
            claims = jwt.decode(token, key, algorithms=[header["alg"]], leeway=self.leeway,
                                options={"require": ["exp"], "verify_aud": False})
        except jwt.ExpiredSignatureError:
            raise Unauthorized("The token has expired.") from None
        except jwt.InvalidTokenError as error:
            # PyJWT's messages name what is wrong, never the token's contents.
            raise Unauthorized(f"The token is not valid: {error}.") from None
        return self._principal(claims, key_id)

    def _key_for(self, header: dict[str, Any]) -> tuple[Any, str | None]:
        """The key the header's algorithm is pinned to, and its kid (None for the secret)."""
        alg = header.get("alg")
        if alg == SECRET_ALGORITHM:
            if self.secret is None:
                raise Unauthorized("HS256 tokens are not accepted here: this service verifies "
                                   "tokens with its identity provider's published keys.")
            return self.secret, None
        if not isinstance(alg, str) or alg not in JWKS_ALGORITHMS:
            raise Unauthorized(f"The token's algorithm {str(alg)[:16]!r} is not accepted.")
        if self.keys is None:
            raise Unauthorized(f"{alg} tokens are not accepted here: no JWKS URL is configured.")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthorized("The token's header has no 'kid' naming its signing key.")
        key = self.keys.signing_key(kid)
        if key is None:
            raise Unauthorized(f"The token's signing key {kid[:64]!r} is not published by the "
                               "identity provider (JWKS).")
        return key, kid

    def _principal(self, claims: dict[str, Any], key_id: str | None) -> Principal:
        """Who verified claims name: a service only by our secret (or the opted-in service
        audience); anyone else a user, by role, aud, iss and sub."""
        expires_at = float(claims["exp"]) + self.leeway
        role = claims.get("role")
        signed_with_secret = key_id is None
        if signed_with_secret and role == SERVICE_ROLE:
            return Principal(SERVICE_ROLE, None, expires_at)
        if not signed_with_secret and self._names_service_audience(claims):
            return Principal(SERVICE_ROLE, None, expires_at, key_id)
        if self.user_role is not None and role != self.user_role:
            if role == SERVICE_ROLE:
                raise Unauthorized("A token signed by the identity provider's keys is a user token; "
                                   "service tokens are signed with COUNTS_JWT_SECRET.")
            raise Unauthorized(f"The token's role must be {self.user_role!r}"
                               + (" or 'service_role'." if self.secret is not None else "."))
        self._check_audience(claims.get("aud"), signed_with_secret)
        if self.issuer is not None and claims.get("iss") != self.issuer:
            raise Unauthorized(f"The token's issuer ('iss') must be {self.issuer!r}.")
        try:
            user_id = UUID(str(claims.get("sub")))
        except ValueError:
            raise Unauthorized("The token's 'sub' must be the user's UUID.") from None
        return Principal(USER_ROLE, user_id, expires_at, key_id)

    def _names_service_audience(self, claims: dict[str, Any]) -> bool:
        """A provider token from our issuer naming the configured service audience."""
        if not self.service_audience or claims.get("iss") != self.issuer:
            return False
        aud = claims.get("aud")
        return any(isinstance(each, str) and each in self.service_audience
                   for each in (aud if isinstance(aud, list) else [aud]))

    def _check_audience(self, aud: Any, signed_with_secret: bool) -> None:
        """`aud` (a string or a list) names an accepted audience; absent only as the module says."""
        if aud is None:
            if signed_with_secret and not self.audience_required:
                return
            raise Unauthorized("The token has no 'aud' claim; a user token must name this "
                               f"service's audience ({', '.join(sorted(self.audience))}).")
        given = aud if isinstance(aud, list) else [aud]
        if not any(isinstance(each, str) and each in self.audience for each in given):
            raise Unauthorized("The token's audience ('aud') is not accepted here; expected "
                               f"{' or '.join(repr(a) for a in sorted(self.audience))}.")


def mint_token(secret: str, subject: str, service: bool = False, ttl: int = 3600, *,
               audience: str | None = None, issuer: str | None = None) -> str:
    """Sign an HS256 token for a user (or, with service=True, a service) valid for `ttl` seconds;
    `audience` and `issuer` go into user tokens, as Supabase puts them there."""
    now = int(time.time())
    claims: dict[str, Any] = {"sub": subject, "role": SERVICE_ROLE if service else USER_ROLE,
                              "iat": now, "exp": now + ttl}
    if not service:
        claims.update({k: v for k, v in (("aud", audience), ("iss", issuer)) if v is not None})
    return jwt.encode(claims, secret, algorithm=SECRET_ALGORITHM)
