"""Settings: everything counts reads from its environment, in one frozen, typed object.

This module is the only reader of the environment: gunicorn.conf.py, the app, the push dispatcher
and the CLI all start from `Settings.from_env()`. Each setting is declared once, with its
variable, its default and what it means (docs/configuration.md is generated from these
declarations, and a test fails when the two differ), and checked here: a bad value stops the
start with one sentence naming the variable, never a traceback at the first request.

Plain frozen dataclasses, not pydantic-settings: some forty flat settings and a handful of
parsers do not need a validation framework, and gunicorn's master imports this module, which
must stay light (nothing that the gevent workers patch after fork, such as ssl through redis-py).
A push provider declares its own section the same way, beside its code (counts.push.providers),
and loads it from `Settings.environ` with `load_section`.
"""

import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

import psycopg2.extensions

T = TypeVar("T")

DEVELOPMENT_JWT_SECRET = "counts-development-secret-do-not-deploy"  # noqa: S105 - by design
USER_ROLE = "authenticated"  # the `role` of Supabase's users' access tokens
DEFAULT_AUDIENCE = "authenticated"  # and their `aud`
SOURCES = ("own", "attached")
DEFAULT_MARKER_TTL = 30 * 24 * 3600  # seconds: an idle user's marker lives a month


class SettingsError(RuntimeError):
    """A setting that cannot be used; the message names its variable and never a secret."""


class _Unset:
    """What a parser returns for an empty value that means "the default"."""


UNSET = _Unset()
Parser = Callable[[str, str], Any]  # (raw value, variable name) -> value, or UNSET


def setting(env: str, default: Any, doc: str, parse: Parser) -> Any:
    """A field read from the environment variable `env` with `parse`; `default` when unset."""
    return field(default=default, metadata={"env": env, "doc": doc, "parse": parse})


def load_section(section: type[T], environ: Mapping[str, str]) -> T:
    """A section dataclass with every setting read from `environ` (its checks run as it is built)."""
    values = {}
    for each in fields(section):  # type: ignore[arg-type]
        meta = each.metadata
        if "env" not in meta:
            continue
        raw = environ.get(meta["env"])
        value = UNSET if raw is None else meta["parse"](raw, meta["env"])
        values[each.name] = each.default if value is UNSET else value
    return section(**values)


def declared(section: type) -> list[tuple[str, Any, str]]:
    """(variable, default, meaning) of each setting a section declares, in order."""
    return [(each.metadata["env"], each.default, each.metadata["doc"])
            for each in fields(section) if "env" in each.metadata]


# --- parsers ----------------------------------------------------------------------------------

def text(raw: str, name: str) -> str | None:
    """A string; empty is None."""
    return raw.strip() or None


def text_or_default(raw: str, name: str) -> str | _Unset:
    """A string; empty is the default."""
    return raw.strip() or UNSET


def words(raw: str, name: str) -> tuple[str, ...] | _Unset:
    """A comma-separated list; empty is the default."""
    found = tuple(word.strip() for word in raw.split(",") if word.strip())
    return found or UNSET


def number(kind: type, minimum: float | None = None, above: float | None = None) -> Parser:
    """An int or float (empty: the default), at least `minimum` or more than `above`."""
    def parse(raw: str, name: str) -> Any:
        if not raw.strip():
            return UNSET
        try:
            value = kind(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a number, got {raw!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise SettingsError(f"{name} must be a finite number, got {raw!r}")
        if minimum is not None and value < minimum:
            raise SettingsError(f"{name} must be at least {minimum}, got {raw!r}")
        if above is not None and value <= above:
            raise SettingsError(f"{name} must be more than {above}, got {raw!r}")
        return value
    return parse


def choice(*allowed: str) -> Parser:
    """One of `allowed` (empty: the default)."""
    def parse(raw: str, name: str) -> str | _Unset:
        value = raw.strip()
        if not value:
            return UNSET
        if value not in allowed:
            raise SettingsError(f"{name} must be one of {', '.join(allowed)}, got {raw!r}")
        return value
    return parse


def postgres_urls(raw: str, name: str) -> tuple[str, ...]:
    """A comma-separated list of postgresql:// URLs, each checked (never echoed: a password)."""
    urls = tuple(url.strip() for url in raw.split(",") if url.strip())
    for url in urls:
        try:
            if not url.startswith(("postgresql://", "postgres://")):
                raise psycopg2.ProgrammingError("not a postgresql:// URL")
            psycopg2.extensions.parse_dsn(url)
        except psycopg2.ProgrammingError as error:
            raise SettingsError(f"{name} holds a URL that is not a Postgres URL: {error}") from None
    return urls


# A Postgres name as `schema.function`: each part a plain identifier (folded to lower case, as
# Postgres folds it) or a "quoted" one (kept as written, "" standing for one quote).
_NAME_PART = r'(?:"((?:[^"]|"")+)"|([A-Za-z_][A-Za-z0-9_$]*))'
_QUALIFIED_NAME = re.compile(_NAME_PART + r"\." + _NAME_PART)


def function_name(raw: str, name: str) -> tuple[str, str] | None:
    """`schema.function` as the (schema, function) Postgres means by it; empty is None."""
    if not raw.strip():
        return None
    found = _QUALIFIED_NAME.fullmatch(raw.strip())
    if found is None:
        raise SettingsError(f"{name} must name a function with its schema, like "
                            f"public.counts_unread; got {raw!r}")
    quoted_schema, plain_schema, quoted_name, plain_name = found.groups()
    schema = quoted_schema.replace('""', '"') if quoted_schema else plain_schema.lower()
    function = quoted_name.replace('""', '"') if quoted_name else plain_name.lower()
    return schema, function


def https_url(raw: str, name: str) -> str | None:
    """An https URL, or http to a loopback host (keys or tokens fetched over plain http from
    elsewhere can be swapped by anyone on the path); empty is None."""
    url = raw.strip()
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(f"{name} must be an https URL, got {url!r}")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise SettingsError(f"{name} must be https: what is fetched over plain http can be swapped "
                            f"by anyone on the path (http is allowed only to localhost), got {url!r}")
    return url


def is_loopback(host: str) -> bool:
    """localhost, or an address in 127.0.0.0/8 or ::1 (no name lookup: it must be evident)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- Redis topology: parsed here, without redis-py (the master must not import it) ------------

SINGLE_SCHEMES = ("redis", "rediss", "unix")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
DEFAULT_PORTS = {"sentinel": 26379, "cluster": 6379}


@dataclass(frozen=True)
class RedisTopology:
    """What a REDIS_URL names: one server, a Sentinel-managed primary, or a Cluster."""

    kind: str  # "single", "sentinel" or "cluster"
    url: str
    nodes: tuple[tuple[str, int], ...] = ()  # sentinels, or the cluster's startup nodes
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None
    service: str | None = None  # the primary's name at the sentinels
    db: int = 0
    tls: bool = False


def parse_redis_url(url: str) -> RedisTopology:
    """The topology a REDIS_URL names; ValueError, saying what is wrong, for a bad one."""
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise ValueError("REDIS_URL must start with a scheme, such as redis://")
    if scheme in SINGLE_SCHEMES:
        _check_single(url)
        return RedisTopology("single", url, tls=scheme == "rediss")
    kind = "sentinel" if scheme in SENTINEL_SCHEMES else "cluster" if scheme in CLUSTER_SCHEMES else None
    if kind is None:
        raise ValueError(f"REDIS_URL scheme {scheme!r} is not one of "
                         f"{', '.join(SINGLE_SCHEMES + SENTINEL_SCHEMES + CLUSTER_SCHEMES)}")
    parts = urlsplit(url)
    credentials, _, hosts = parts.netloc.rpartition("@")
    username, _, password = credentials.partition(":")
    nodes = tuple(_host_port(node, DEFAULT_PORTS[kind]) for node in hosts.split(","))
    path = [segment for segment in parts.path.split("/") if segment]
    query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
    if set(query) - {"sentinel_password"} or (query and kind == "cluster"):
        raise ValueError(f"REDIS_URL: unknown query parameters {sorted(query)} for {scheme}://")
    topology = RedisTopology(kind, url, nodes, unquote(username) or None,
                             unquote(password) or None, query.get("sentinel_password"),
                             tls=scheme.startswith("rediss"))
    if kind == "cluster":
        if path:
            raise ValueError("REDIS_URL: a redis+cluster:// URL has no path (a Cluster has no db)")
        return topology
    if not 1 <= len(path) <= 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ValueError("REDIS_URL: a redis+sentinel:// URL ends in /<service_name>[/<db>], "
                         f"got path {parts.path!r}")
    return replace(topology, service=unquote(path[0]), db=int(path[1]) if len(path) == 2 else 0)


def _check_single(url: str) -> None:
    """What redis-py's from_url would refuse in a redis://, rediss:// or unix:// URL."""
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ValueError("REDIS_URL: the port is not a number") from None
    db = parse_qs(parts.query).get("db", [""])[-1] or parts.path.lstrip("/")
    if db and not db.isdigit():
        raise ValueError(f"REDIS_URL: the database must be a number, got {db!r}")


def _host_port(node: str, default_port: int) -> tuple[str, int]:
    """("host", port) from "host[:port]" or "[v6]:port"; ValueError if it is not one."""
    host, _, port = node.rpartition(":") if not node.endswith("]") else (node, "", "")
    if not host:
        host, port = node, ""
    host = host.strip("[]")
    if not host or (port and not port.isdigit()):
        raise ValueError(f"REDIS_URL: {node!r} is not host:port")
    return host, int(port) if port else default_port


DEFAULT_REDIS = parse_redis_url("redis://127.0.0.1:6379/0")


def redis_url(raw: str, name: str) -> RedisTopology | _Unset:
    """A REDIS_URL in any topology (empty: the default)."""
    if not raw.strip():
        return UNSET
    try:
        return parse_redis_url(raw.strip())
    except ValueError as error:
        raise SettingsError(str(error)) from None


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
        "TABLE (user_id uuid, conversation_id uuid, unread bigint).", function_name)

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


SECTIONS = (ServerSettings, IdentitySettings, PostgresSettings, RedisSettings, SourceSettings,
            HttpSettings, LiveSettings, BumpSettings, PushSettings)
