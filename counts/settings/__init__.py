"""Settings: everything counts reads from its environment, in one frozen, typed object.

This module is the only reader of the environment: gunicorn.conf.py, the app, the push dispatcher
and the CLI all start from `Settings.from_env()`. Each setting is declared once, with its
variable, its default and what it means (docs/configuration.md is generated from these
declarations, and a test fails when the two differ), and checked here: a bad value stops the
start with one sentence naming the variable, never a traceback at the first request.

Plain frozen dataclasses, not pydantic-settings: some forty flat settings and a handful of
parsers (counts.settings.parse) do not need a validation framework, and gunicorn's master imports
this package, which must stay light (nothing that the gevent workers patch after fork, such as
ssl through redis-py). A push provider declares its own section the same way, beside its code
(counts.push.providers), and reads it from the same environment with `Settings.section`.
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TypeVar

from counts.settings.parse import (
    DEFAULT_REDIS,
    RedisTopology,
    SettingsError,
    choice,
    declared,
    function_name,
    https_url,
    load_section,
    number,
    parse_redis_url,
    postgres_urls,
    redis_url,
    setting,
    text,
    text_or_default,
    words,
)

T = TypeVar("T")

DEVELOPMENT_JWT_SECRET = "counts-development-secret-do-not-deploy"  # noqa: S105 - by design
USER_ROLE = "authenticated"  # the `role` of Supabase's users' access tokens
DEFAULT_AUDIENCE = "authenticated"  # and their `aud`
SOURCES = ("own", "attached")
# The app icon's number (counts.representation.totals): COUNTS_BADGE_POLICY, or a user's own.
BADGE_POLICIES = ("messages", "conversations", "mentions", "none")
DEFAULT_MARKER_TTL = 30 * 24 * 3600  # seconds: an idle user's marker lives a month


# --- the sections -------------------------------------------------------------------------------

@dataclass(frozen=True)
class ServerSettings:
    """The processes: where gunicorn listens, how many workers, the logs."""

    env: str = setting("COUNTS_ENV", "production", "development lets the service start without "
                       "any key source (it then uses a built-in JWT secret).", text_or_default)
    bind: str = setting("COUNTS_BIND", "127.0.0.1:8000", "Where the API listens (gunicorn bind).",
                        text_or_default)
    admin_bind: str | None = setting(
        "COUNTS_ADMIN_BIND", "127.0.0.1:8002", "The operators' address: /metrics and the detailed "
        "/readyz (empty: not served). Keep it off the public network.", text)
    workers: int = setting("COUNTS_WORKERS", 2, "gunicorn worker processes.", number(int, minimum=1))
    log_level: str = setting("COUNTS_LOG_LEVEL", "info", "debug, info, warning or error.",
                             choice("debug", "info", "warning", "error", "critical"))
    log_flush_seconds: float = setting(
        "COUNTS_LOG_FLUSH_SECONDS", 1.0, "Request log lines are written in batches, at most this "
        "many seconds late.", number(float, above=0))
    metrics_dir: str | None = setting(
        "PROMETHEUS_MULTIPROC_DIR", None, "Where workers keep their metric samples (set by "
        "gunicorn.conf.py to a fresh directory when unset).", text)

    def __post_init__(self) -> None:
        if self.admin_bind is not None and self.admin_bind == self.bind:
            raise SettingsError("COUNTS_ADMIN_BIND must differ from COUNTS_BIND: the metrics and "
                                "the detailed readiness are for operators, not the API's callers")


@dataclass(frozen=True)
class IdentitySettings:
    """Who may call: bearer tokens signed with a secret (HS256) or a provider's published keys."""

    jwt_secret: str | None = setting(
        "COUNTS_JWT_SECRET", None, "Verifies HS256 tokens; service tokens are signed with it. "
        "This or COUNTS_JWKS_URL (or both) is required unless COUNTS_ENV=development.", text)
    jwks_url: str | None = setting(
        "COUNTS_JWKS_URL", None, "Where the identity provider publishes its public keys (ES256, "
        "RS256, EdDSA); https, or http to localhost only.", https_url)
    jwks_refresh: float = setting("COUNTS_JWKS_REFRESH", 300.0, "Seconds between JWKS fetches.",
                                  number(float, above=0))
    audience: tuple[str, ...] | None = setting(
        "COUNTS_JWT_AUDIENCE", None, "Accepted user-token audiences, comma-separated (unset: "
        "'authenticated', and secret-signed tokens may omit aud).", words)
    issuer: str | None = setting("COUNTS_JWT_ISSUER", None, "The `iss` user tokens must carry.",
                                 text)
    leeway: float = setting("COUNTS_JWT_LEEWAY", 30.0, "Seconds of clock skew allowed past `exp`.",
                            number(float, minimum=0))
    user_role: str | None = setting(
        "COUNTS_JWT_USER_ROLE", USER_ROLE, "The `role` of user tokens; empty for providers whose "
        "tokens carry no role claim.", text)
    service_audience: tuple[str, ...] | None = setting(
        "COUNTS_JWT_SERVICE_AUDIENCE", None, "Opt-in: tokens from the JWKS keys with `iss` "
        "COUNTS_JWT_ISSUER and one of these audiences are services'.", words)

    def __post_init__(self) -> None:
        if self.service_audience:
            if not (self.jwks_url and self.issuer):
                raise SettingsError("COUNTS_JWT_SERVICE_AUDIENCE needs COUNTS_JWKS_URL and "
                                    "COUNTS_JWT_ISSUER: it names the provider tokens that are "
                                    "services'")
            shared = set(self.service_audience) & set(self.audience or (DEFAULT_AUDIENCE,))
            if shared:
                raise SettingsError(f"COUNTS_JWT_SERVICE_AUDIENCE {sorted(shared)} is also a user "
                                    "audience: every user token would have service rights")


@dataclass(frozen=True)
class PostgresSettings:
    """The database: the primary, its read replicas, and how long a query may hang."""

    url: str = setting("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/counts",
                       "The Postgres primary.", text_or_default)
    replica_urls: tuple[str, ...] = setting(
        "DATABASE_REPLICA_URLS", (), "Read replicas for the 200 path, comma-separated; writes "
        "stay on DATABASE_URL.", postgres_urls)
    timeout: float = setting("COUNTS_PG_TIMEOUT", 2.0, "Seconds a Postgres call may take.",
                             number(float, above=0))
    pool_size: int = setting("COUNTS_PG_POOL_SIZE", 8, "Postgres connections per worker.",
                             number(int, minimum=1))


@dataclass(frozen=True)
class RedisSettings:
    """The marker store: one Redis, a Sentinel-managed primary, or a Cluster."""

    topology: RedisTopology = setting(
        "REDIS_URL", DEFAULT_REDIS, "redis://, rediss://, unix://, "
        "redis+sentinel://host[:port],.../service[/db] or redis+cluster://host[:port],...",
        redis_url)
    timeout: float = setting("COUNTS_REDIS_TIMEOUT", 0.25, "Seconds a Redis call may take.",
                             number(float, above=0))
    pool_size: int = setting("COUNTS_REDIS_POOL_SIZE", 64, "Redis sockets per worker and server.",
                             number(int, minimum=1))
    marker_ttl: int = setting("COUNTS_MARKER_TTL", DEFAULT_MARKER_TTL,
                              "Seconds an idle user's marker lives.", number(int, minimum=1))


@dataclass(frozen=True)
class SourceSettings:
    """Where counts come from: our own tables, or the app's unread function (attached mode)."""

    mode: str = setting("COUNTS_SOURCE", "own", "own (our tables and write API) or attached (the "
                        "app's tables, through its function).", choice(*SOURCES))
    unread_function: tuple[str, str] | None = setting(
        "COUNTS_UNREAD_FUNCTION", None, "Attached mode: schema.function (user_ids uuid[]) RETURNS "
        "TABLE (user_id uuid, conversation_id uuid, unread bigint), optionally with mentions "
        "bigint, notify text, marked_unread boolean, parent_id uuid.", function_name)
    badge_policy: str = setting(
        "COUNTS_BADGE_POLICY", "messages", "The app icon's number (the body's badge, every "
        "push's): messages, conversations, mentions or none; a user may choose their own.",
        choice(*BADGE_POLICIES))
    mention_all_max_members: int = setting(
        "COUNTS_MENTION_ALL_MAX_MEMBERS", 1000, "A user may mention everyone only in conversations "
        "of at most this many members (a service always may).", number(int, minimum=0))

    def __post_init__(self) -> None:
        if self.mode == "attached" and self.unread_function is None:
            raise SettingsError(
                "COUNTS_SOURCE=attached needs COUNTS_UNREAD_FUNCTION: the app's function "
                "(user_ids uuid[]) RETURNS TABLE (user_id uuid, conversation_id uuid, unread "
                "bigint), with its schema, like public.counts_unread")


@dataclass(frozen=True)
class HttpSettings:
    """The API: polling pace, limits, proxies, browsers."""

    poll_interval: int = setting("COUNTS_POLL_INTERVAL", 30, "X-Poll-Interval: seconds between "
                                 "polls clients are asked to wait.", number(int, minimum=1))
    rate_limit: int = setting("COUNTS_RATE_LIMIT", 120, "Requests a minute per user (0: off).",
                              number(int, minimum=0))
    anonymous_rate_limit: int = setting(
        "COUNTS_ANONYMOUS_RATE_LIMIT", 60, "Requests a minute per IP without a valid token (0: "
        "off).", number(int, minimum=0))
    trusted_proxies: int = setting(
        "COUNTS_TRUSTED_PROXIES", 0, "Proxies in front that append to X-Forwarded-For (1 behind "
        "a load balancer).", number(int, minimum=0))
    threads: int = setting(
        "COUNTS_THREADS", 8, "Requests a worker answers at once before it counts as saturated "
        "(and gthread's threads).", number(int, minimum=1))
    busy_poll_factor: int = setting(
        "COUNTS_BUSY_POLL_FACTOR", 2, "X-Poll-Interval is multiplied by this while a worker is "
        "saturated.", number(int, minimum=1))
    retry_after: int = setting("COUNTS_RETRY_AFTER", 5, "Retry-After seconds on 503.",
                               number(int, minimum=1))
    max_body_bytes: int = setting("COUNTS_MAX_BODY_BYTES", 1024 * 1024, "Larger request bodies are "
                                  "refused with 413.", number(int, minimum=1))
    cors_origins: tuple[str, ...] = setting(
        "COUNTS_CORS_ORIGINS", (), "Origins whose pages may call the API, comma-separated, exact "
        "(* for any; empty: no CORS).", words)


@dataclass(frozen=True)
class LiveSettings:
    """Long-polls, Server-Sent Events and WebSockets."""

    max_wait: int = setting("COUNTS_MAX_WAIT", 25, "Longest long-poll, in seconds (proxies cut "
                            "idle connections at 55-60 s).", number(int, minimum=1))
    max_streams: int = setting("COUNTS_MAX_STREAMS", 10_000, "Live connections a worker holds; "
                               "past it long-polls answer at once and streams get 503.",
                               number(int, minimum=0))
    heartbeat: float = setting("COUNTS_STREAM_HEARTBEAT", 15.0, "Seconds between a stream's "
                               "heartbeats (and re-checks of its marker).", number(float, above=0))
    ws_ping_interval: float = setting("COUNTS_WS_PING_INTERVAL", 30.0, "Seconds between WebSocket "
                                      "pings.", number(float, above=0))
    ticket_ttl: int = setting("COUNTS_STREAM_TICKET_TTL", 30, "Seconds a stream ticket is valid.",
                              number(int, minimum=1))
    shutdown_seconds: float = setting(
        "COUNTS_STREAM_SHUTDOWN_SECONDS", 5.0, "On SIGTERM, live connections close at random "
        "moments over this many seconds.", number(float, minimum=0))


@dataclass(frozen=True)
class BumpSettings:
    """The bump outbox."""

    drain_interval: float = setting(
        "COUNTS_OUTBOX_DRAIN_INTERVAL", 2.0, "Seconds between a worker's outbox drains (0: no "
        "drainer).", number(float, minimum=0))


@dataclass(frozen=True)
class PushSettings:
    """The push dispatcher (`flask push-worker`); each provider's own settings live with it."""

    coalesce: float = setting("COUNTS_PUSH_COALESCE", 2.0, "A burst for one user within this many "
                              "seconds becomes one push.", number(float, above=0))
    max_age: float = setting("COUNTS_PUSH_MAX_AGE", 24 * 3600.0, "An undelivered push older than "
                             "this is dropped and counted.", number(float, above=0))
    batch: int = setting("COUNTS_PUSH_BATCH", 100, "Users per dispatcher round.",
                         number(int, minimum=1))
    concurrency: int = setting("COUNTS_PUSH_CONCURRENCY", 32, "Pushes in flight per dispatcher.",
                               number(int, minimum=1))
    poll_interval: float = setting("COUNTS_PUSH_POLL_INTERVAL", 5.0, "Seconds a dispatcher waits "
                                   "for a wake-up before it looks anyway.", number(float, above=0))
    timeout: float = setting("COUNTS_PUSH_TIMEOUT", 10.0, "Seconds per provider request.",
                             number(float, above=0))
    retry_base: float = setting("COUNTS_PUSH_RETRY_BASE", 1.0, "First retry delay, doubling.",
                                number(float, above=0))
    retry_max: float = setting("COUNTS_PUSH_RETRY_MAX", 900.0, "Longest retry delay.",
                               number(float, above=0))
    presence: str = setting(
        "COUNTS_PUSH_PRESENCE", "device", "Whose alerts a live stream silences: device (only the "
        "device that opened it, named by ?device_id=) or user (every device of its user: active "
        "on the desktop, no alerts on the phone).", choice("device", "user"))
    max_devices: int = setting("COUNTS_PUSH_MAX_DEVICES", 10, "Devices kept per user (the oldest "
                               "go).", number(int, minimum=1))
    metrics_port: int = setting("COUNTS_PUSH_METRICS_PORT", 0, "Where a dispatcher serves its "
                                "/metrics (0: off).", number(int, minimum=0))
    metrics_host: str = setting("COUNTS_PUSH_METRICS_HOST", "127.0.0.1", "The host of that port.",
                                text_or_default)
    ca_file: str | None = setting("COUNTS_PUSH_CA_FILE", None, "CA bundle for TLS to the "
                                  "providers (default: certifi's).", text)


@dataclass(frozen=True)
class Settings:
    """Every setting, by concern; `environ` keeps what was read, for the providers' sections."""

    development: bool
    server: ServerSettings
    identity: IdentitySettings
    postgres: PostgresSettings
    redis: RedisSettings
    source: SourceSettings
    http: HttpSettings
    live: LiveSettings
    bumps: BumpSettings
    push: PushSettings
    environ: Mapping[str, str] = field(repr=False, compare=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """The settings of `environ` (default: this process's environment), checked."""
        env = MappingProxyType(dict(os.environ if environ is None else environ))
        server = load_section(ServerSettings, env)
        development = server.env == "development"
        identity = load_section(IdentitySettings, env)
        if not identity.jwt_secret and not identity.jwks_url:
            if not development:
                # An unset secret must not quietly become a well-known one in production.
                raise SettingsError(
                    "Neither COUNTS_JWT_SECRET nor COUNTS_JWKS_URL is set. Set one or both (see "
                    "docs/attach.md, 'Supabase'), or set COUNTS_ENV=development to use the "
                    "built-in development secret.")
            identity = replace(identity, jwt_secret=DEVELOPMENT_JWT_SECRET)
        return cls(development=development, server=server,
                   identity=identity, postgres=load_section(PostgresSettings, env),
                   redis=load_section(RedisSettings, env), source=load_section(SourceSettings, env),
                   http=load_section(HttpSettings, env), live=load_section(LiveSettings, env),
                   bumps=load_section(BumpSettings, env), push=load_section(PushSettings, env),
                   environ=env)

    def section(self, section: type[T]) -> T:
        """Another module's section (a push provider's), read from the same environment."""
        return load_section(section, self.environ)

    def unknown(self, *sections: type) -> list[str]:
        """COUNTS_* variables of the environment that neither the service's sections nor
        `sections` declare: a typo, or a setting of another version. (COUNTS_TEST_* are the
        test suite's own.)"""
        known = {name for section in (*SECTIONS, *sections) for name, _, _ in declared(section)}
        return sorted(name for name in self.environ if name.startswith("COUNTS_")
                      and not name.startswith("COUNTS_TEST_") and name not in known)


SECTIONS = (ServerSettings, IdentitySettings, PostgresSettings, RedisSettings, SourceSettings,
            HttpSettings, LiveSettings, BumpSettings, PushSettings)

__all__ = ["BADGE_POLICIES", "DEFAULT_AUDIENCE", "DEFAULT_MARKER_TTL", "DEVELOPMENT_JWT_SECRET", "SECTIONS",
           "USER_ROLE",
           "BumpSettings", "HttpSettings", "IdentitySettings", "LiveSettings", "PostgresSettings",
           "PushSettings", "RedisSettings", "RedisTopology", "ServerSettings", "Settings",
           "SettingsError", "SourceSettings", "function_name", "parse_redis_url"]
