"""Bearer JWTs (HS256), following Supabase's claims: `sub` is the user, `role` says who is calling."""

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from uuid import UUID

import jwt

from counts.errors import Forbidden, Unauthorized

USER_ROLE = "authenticated"
SERVICE_ROLE = "service_role"
ALGORITHM = "HS256"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user (with their id) or a trusted backend service."""

    role: str
    user_id: UUID | None
    expires_at: float
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
    hit; expiry is checked again on every hit.
    """

    def __init__(self, secret: str, cache_size: int = 50_000):
        self.secret = secret
        self.cache_size = cache_size
        self._verified: OrderedDict[str, Principal] = OrderedDict()  # least recently used first
        self._lock = threading.Lock()

    def verify(self, authorization: str | None) -> Principal:
        """The principal an `Authorization` header proves, or Unauthorized."""
        if not authorization:
            raise Unauthorized("Send an Authorization: Bearer <token> header.")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("The Authorization header must be 'Bearer <token>'.")
        token = token.strip()
        principal = self._verified.get(token)
        if principal is None:
            principal = self._decode(token)
            with self._lock:
                if len(self._verified) >= self.cache_size:
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

    def _decode(self, token: str) -> Principal:
        """Check signature, algorithm, expiry and claims."""
        try:
            claims = jwt.decode(token, self.secret, algorithms=[ALGORITHM],
                                options={"require": ["exp"]})
        except jwt.ExpiredSignatureError:
            raise Unauthorized("The token has expired.") from None
        except jwt.InvalidTokenError as error:
            raise Unauthorized(f"The token is not valid: {error}.") from None
        role = claims.get("role")
        if role == SERVICE_ROLE:
            return Principal(SERVICE_ROLE, None, float(claims["exp"]))
        if role != USER_ROLE:
            raise Unauthorized("The token's role must be 'authenticated' or 'service_role'.")
        try:
            user_id = UUID(str(claims.get("sub")))
        except ValueError:
            raise Unauthorized("The token's 'sub' must be the user's UUID.") from None
        return Principal(USER_ROLE, user_id, float(claims["exp"]))


def require_service(principal: Principal) -> None:
    """Only trusted backend services may go on."""
    if not principal.is_service:
        raise Forbidden("Only a service token may call this endpoint.")


def require_user_or_service(principal: Principal, user_id: UUID) -> None:
    """Only that user, or a service, may go on."""
    if not principal.is_service and principal.user_id != user_id:
        raise Forbidden("A user token may only act on its own user's data.")


def mint_token(secret: str, subject: str, service: bool = False, ttl: int = 3600) -> str:
    """Sign a token for a user (or, with service=True, a service) valid for `ttl` seconds."""
    now = int(time.time())
    claims = {"sub": subject, "role": SERVICE_ROLE if service else USER_ROLE,
              "iat": now, "exp": now + ttl}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)
