"""Markers: read a user's (or many users'), bump them after a write, confirm their LSN records.

A marker is a random token that changes whenever anything that can change a user's counts
changes: random, never a counter, so a marker Redis lost is replaced by one no client can hold
(DESIGN.md invariant 4). The ETag is a token, `b<body version>.<marker>.<epoch>`: the epoch, read by the same
script as the marker, is the start of the Redis primary's replication id, which changes on every
restart and promotion, so a marker rolled back by a failover comes back under a new token
(invariant 9). With Postgres replicas, each marker also carries an LSN record: the WAL position
a replica must have replayed to answer for the user (invariant 11).
"""

import functools
import logging
import secrets
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple
from uuid import UUID

import redis

from counts.errors import DependencyUnavailable
from counts.markers import scripts, topology
from counts.markers.keys import marker_key, rate_key
from counts.observability import metrics
from counts.settings import DEFAULT_MARKER_TTL, RedisTopology

log = logging.getLogger(__name__)

Wal = Callable[[], int] | None  # reads the primary's WAL position now (with replicas), or None


def connect(redis_topology: RedisTopology, timeout: float, max_connections: int) -> Any:
    """The marker store for REDIS_URL's topology (see counts.markers.topology), with at most
    `max_connections` sockets per server."""
    return topology.connect_redis(redis_topology, timeout, max_connections)


def new_marker() -> str:
    """A fresh marker: 96 random bits, URL- and ETag-safe."""
    return secrets.token_urlsafe(12)


def lsn_hex(position: int) -> str:
    """A WAL position as Redis keeps it: 16 hex digits, so that Lua compares them as strings."""
    return f"{position:016X}"


class MarkerRead(NamedTuple):
    """What one poll learns from Redis in one round trip."""

    token: str  # the ETag: marker and epoch
    requests: int  # in the current rate window (0 when not counted)
    lsn: int | None  # the WAL position a replica must have replayed; None: only the primary


def read(client: Any, user_id: UUID | str, ttl: int = DEFAULT_MARKER_TTL,
         window: int = 0) -> MarkerRead:
    """The user's token (the marker created with its TTL when missing), their requests in this
    rate window if `window` is set, and the WAL position they need: one round trip."""
    token, hits, created, lsn = scripts.run(
        scripts.read_marker.single, client, (marker_key(user_id), rate_key(str(user_id))),
        (new_marker(), ttl, window))
    if created:
        metrics.MARKERS_CREATED.inc()
    return MarkerRead(token.decode(), hits, None if lsn is None else int(lsn, 16))


def read_markers_and_lsns(client: Any, user_ids: Iterable[UUID | str],
                          ttl: int = DEFAULT_MARKER_TTL, listen: int = 0,
                          ) -> tuple[dict[str, str], dict[str, int | None]]:
    """Tokens (markers created where missing) and WAL positions of many users: one round trip
    per server. Users on a server that failed are left out; if all failed, the error is raised.

    A live feed passes `listen` (seconds): each user's listen flag is set for that long in the
    same step as their marker is read, so every later bump of theirs publishes (see keep_listening).
    """
    def read_group(group: topology.ServerGroup) -> Any:
        return scripts.read_markers.on(group.cluster_node)(
            [], [new_marker(), ttl, listen, *(marker_key(uid) for uid in group.user_ids)],
            client=group.client)

    tokens: dict[str, str] = {}
    lsns: dict[str, int | None] = {}
    errors = []
    results = topology.per_server(client, [str(uid) for uid in user_ids], read_group)
    for group, result in results:
        if isinstance(result, Exception):
            errors.append(result)
            continue
        created, found, n = result[0], result[1:], len(group.user_ids)
        metrics.MARKERS_CREATED.inc(created)
        for i, uid in enumerate(group.user_ids):
            tokens[uid] = found[i].decode()
            lsns[uid] = None if found[n + i] is None else int(found[n + i], 16)
    if errors and not tokens:
        raise errors[0]
    for error in errors:
        log.warning("markers of some users unread, a Redis server failed: %r", error)
        metrics.redis_failed("read_markers")
    return tokens, lsns


def keep_listening(client: Any, user_ids: list[str], seconds: int) -> list[str]:
    """Give the listen flags of users a live feed still listens to `seconds` more: one round trip
    per server. The users to re-check (which flags their marker as it reads it): those whose flag
    had lapsed or whose marker was lost, and those of a server that failed (theirs may lapse)."""
    def refresh_group(group: topology.ServerGroup) -> Any:
        return scripts.keep_listening.on(group.cluster_node)(
            [], [seconds, *(marker_key(uid) for uid in group.user_ids)], client=group.client)

    again: list[str] = []
    for group, result in topology.per_server(client, user_ids, refresh_group):
        if isinstance(result, Exception):
            log.warning("listen flags not refreshed, re-checking their users: %r", result)
            metrics.redis_failed("keep_listening")
            again += group.user_ids
        else:
            again += [group.user_ids[i - 1] for i in result]
    return again


class PartialBump(redis.RedisError):
    """Some servers took a bump and others did not: `failed` lists the users not bumped."""

    def __init__(self, failed: list[str], bumped: int, cause: Exception):
        super().__init__(f"{len(failed)} users not bumped ({bumped} were): {cause!r}")
        self.failed, self.bumped, self.cause = failed, bumped, cause


def bump(client: Any, user_ids: Iterable[UUID | str], ttl: int = DEFAULT_MARKER_TTL,
         wal: Wal = None, written_at: float | None = None) -> int:
    """Give each user a new marker, one round trip per server; how many were bumped.

    Call it only after the transaction that changed the counts has committed (invariant 1).
    `wal` (set when Postgres replicas answer reads) reads the primary's WAL position now: it is
    recorded beside the markers, and read once more to confirm records a loss made pending.
    `written_at` (Unix seconds: when the changes committed, if known) rides on the feed's message,
    for the commit-to-live-frame latency (counts_live_latency_seconds).
    Raises PartialBump if some servers failed and others did not, else the error itself.
    """
    users = list(dict.fromkeys(str(uid) for uid in user_ids))
    if not users:
        return 0
    position = lsn_hex(wal()) if wal is not None else ""
    written = "" if written_at is None else f"{written_at:.3f}"

    def bump_group(group: topology.ServerGroup) -> Any:
        return scripts.bump_markers.on(group.cluster_node)(
            [], [new_marker(), ttl, position, written, *(marker_key(uid) for uid in group.user_ids)],
            client=group.client)

    bumped, failed, errors, pending = 0, [], [], []
    for group, result in topology.per_server(client, users, bump_group):
        if isinstance(result, Exception):
            failed += group.user_ids
            errors.append(result)
        else:
            bumped += result[0]
            if len(result) > 2:
                pending.append((group, result[1], [group.user_ids[i - 1] for i in result[2:]]))
    if pending and wal is not None:
        _confirm(pending, wal)
    if bumped:
        metrics.BUMPS.inc()
        metrics.BUMPED_USERS.observe(bumped)
    if failed:
        raise PartialBump(failed, bumped, errors[0]) if bumped else errors[0]
    return bumped


def _confirm(pending: list[tuple[topology.ServerGroup, bytes, list[str]]],
             wal: Callable[[], int]) -> None:
    """Make pending LSN records trusted with a WAL position read now (after the bump returned).

    A record left pending only sends that user's reads to the primary, so failures are logged,
    not raised.
    """
    try:
        position = lsn_hex(wal())
    except DependencyUnavailable as error:
        log.warning("LSN records left pending (reads go to the primary): %s", error)
        return
    calls: list[Callable[[], Any]] = [
        functools.partial(scripts.confirm_lsns.on(group.cluster_node),
                          [], [tag, position, *(marker_key(uid) for uid in users)],
                          client=group.client)
        for group, tag, users in pending]
    for result in topology.in_parallel(calls):
        if isinstance(result, Exception):
            log.warning("LSN records left pending (reads go to the primary): %r", result)
