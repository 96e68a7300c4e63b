"""Who is calling, decided once per request, and what each view allows.

`identify(environ, res)` verifies the request's credential (the bearer token, or a stream's
single-use `?ticket=`) the first time anything asks, and keeps the answer, a Principal or the
Problem that refused it, in the environ: the 304 fast path, the views and the live transports all
read that one answer (as Starlette's AuthenticationMiddleware keeps it in scope["auth"]). A
credential that fails is counted against the caller's address once, then refused (401, or 429
past the anonymous limit). `admit` counts an authenticated user's request in their rate window,
once, unless the fast path counted it with the marker read (PollState.requests).

Views say who may call them with a decorator (as flaskr's login_required does):
`requires_user` (that user, or a service: the path's user_id), `requires_service`, or
`requires_caller` (anyone authenticated; the view checks the user its body names with
`authorize`).
"""

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qs
from uuid import UUID

import redis
from flask import current_app, request

from counts.errors import DependencyUnavailable, Forbidden, Problem, Unauthorized
from counts.http.schemas import parse_uuid
from counts.identity import Principal
from counts.live import tickets
from counts.observability import metrics

PRINCIPAL_KEY = "counts.principal"  # the Principal, or the Problem that refused the credential
POLL_KEY = "counts.poll"  # the PollState of a counts GET the fast path read the marker for

View = TypeVar("View", bound=Callable[..., Any])


@dataclass(frozen=True)
class PollState:
    """What the 304 fast path learnt of a counts GET that it did not answer, for the view."""

    marker: str | None  # the ETag token read before the view's query; None: Redis failed
    lsn: int | None  # the WAL position a replica must have replayed to answer (None: primary)
    requests: int  # this request counted in the user's rate window (0: not counted)
    applied: str | None = None  # Preference-Applied of a long-poll


def identified(environ: dict, res: Any, ticket_for: str | None = None) -> Principal | Problem:
    """The request's principal, or the problem that refused it: verified on the first call,
    remembered for the rest of the request. With `ticket_for` (a stream of that user's), a
    `?ticket=` is the credential when present."""
    found = environ.get(PRINCIPAL_KEY)
    if found is None:
        found = environ[PRINCIPAL_KEY] = _verify(environ, res, ticket_for)
    return found


def identify(environ: dict, res: Any, ticket_for: str | None = None) -> Principal:
    """The request's principal; raises the Problem that refused it."""
    found = identified(environ, res, ticket_for)
    if isinstance(found, Problem):
        raise found
    return found


def _verify(environ: dict, res: Any, ticket_for: str | None) -> Principal | Problem:
    """Check the credential once; a refused one counts against the caller's address."""
    ticket = query_value(environ, "ticket") if ticket_for is not None else None
    try:
        if ticket is None or ticket_for is None:
            return res.tokens.verify(environ.get("HTTP_AUTHORIZATION"))
        return tickets.redeem(res.redis, ticket, ticket_for)
    except Unauthorized as refused:
        try:
            res.rate_limit.check_anonymous(res.redis, environ.get("REMOTE_ADDR") or "unknown",
                                           res.load.poll_interval())
        except Problem as limited:
            return limited
        return refused
    except redis.RedisError:
        metrics.redis_failed("ticket")
        return DependencyUnavailable("Tickets cannot be checked right now; retry.")
    except Problem as problem:  # 403 (another user's ticket), 503 (the JWKS could not be fetched)
        return problem


def admit(environ: dict, res: Any, principal: Principal) -> None:
    """Count a user's request in their rate window (services are not limited), or 429; once:
    the fast path's marker read may have counted it already."""
    if principal.is_service:
        return
    poll = environ.get(POLL_KEY)
    counted = poll.requests if poll is not None and poll.requests else None
    res.rate_limit.check_user(res.redis, principal.user_id, res.load.poll_interval(), counted)


def authorize(principal: Principal, user_id: UUID) -> None:
    """Only that user, or a service, may go on."""
    if not principal.is_service and principal.user_id != user_id:
        raise Forbidden("A user token may only act on its own user's data.")


def parse_path_uuid(value: str, name: str) -> UUID:
    """A path segment that must be a UUID, or a 400 that says which one."""
    try:
        return parse_uuid(value)
    except ValueError:
        raise Problem(f"{name} must be a UUID, got {value[:64]!r}.") from None


def query_value(environ: dict, name: str) -> str | None:
    """A query-string parameter's first value."""
    values = parse_qs(environ.get("QUERY_STRING", "")).get(name)
    return values[0] if values else None


def _caller() -> Principal:
    """The Flask request's principal, admitted within its rate limit."""
    res = current_app.extensions["counts"]
    principal = identify(request.environ, res)
    admit(request.environ, res, principal)
    return principal


def requires_user(view: View) -> View:
    """The path's user_id, or a service: the view gets `user_id` as a UUID."""
    @functools.wraps(view)
    def checked(user_id: str, **kwargs: Any) -> Any:
        principal = _caller()
        uid = parse_path_uuid(user_id, "user_id")
        authorize(principal, uid)
        return view(uid, **kwargs)
    return checked  # type: ignore[return-value]


def requires_service(view: View) -> View:
    """Trusted backend services only."""
    @functools.wraps(view)
    def checked(**kwargs: Any) -> Any:
        if not _caller().is_service:
            raise Forbidden("Only a service token may call this endpoint.")
        return view(**kwargs)
    return checked  # type: ignore[return-value]


def requires_caller(view: View) -> View:
    """Anyone authenticated: the view gets `principal` and authorizes the user its body names."""
    @functools.wraps(view)
    def checked(**kwargs: Any) -> Any:
        return view(principal=_caller(), **kwargs)
    return checked  # type: ignore[return-value]
