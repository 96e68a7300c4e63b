"""Configuration from the environment, with defaults a local run can live with."""

import ipaddress
import math
import os
import re
from typing import Any
from urllib.parse import urlsplit

import psycopg2.extensions

from counts import stores

DEVELOPMENT_JWT_SECRET = "counts-development-secret-do-not-deploy"  # noqa: S105 - by design

# The browsers' push services (Chrome, Firefox, Edge, Safari): a Web Push subscription must point
# at one of them, or the dispatcher would POST wherever a client asked it to.
DEFAULT_WEBPUSH_HOSTS = ("fcm.googleapis.com", "android.googleapis.com",
                         "updates.push.services.mozilla.com", "*.notify.windows.com",
                         "web.push.apple.com")


def _number(env: dict[str, str], name: str, default: float, kind: type = int) -> Any:
    """Read a numeric setting, failing at start-up (not at first request) on garbage."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return kind(raw)
    except ValueError:
        raise RuntimeError(f"{name} must be a number, got {raw!r}") from None


def _words(env: dict[str, str], name: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
    """A comma-separated list setting."""
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    return tuple(word.strip() for word in raw.split(",") if word.strip())


SOURCES = ("own", "attached")

# A Postgres name as `schema.function`: each part a plain identifier (folded to lower case, as
# Postgres folds it) or a "quoted" one (kept as written, "" standing for one quote).
_NAME_PART = r'(?:"((?:[^"]|"")+)"|([A-Za-z_][A-Za-z0-9_$]*))'
_QUALIFIED_NAME = re.compile(_NAME_PART + r"\." + _NAME_PART)


def parse_function_name(raw: str) -> tuple[str, str]:
    """`schema.function` as the (schema, function) Postgres means by it, or a start-up error."""
    found = _QUALIFIED_NAME.fullmatch(raw.strip())
    if found is None:
        raise RuntimeError(
            f"COUNTS_UNREAD_FUNCTION must name a function with its schema, like "
            f"public.counts_unread; got {raw!r}")
    quoted_schema, plain_schema, quoted_name, plain_name = found.groups()
    schema = quoted_schema.replace('""', '"') if quoted_schema else plain_schema.lower()
    name = quoted_name.replace('""', '"') if quoted_name else plain_name.lower()
    return schema, name


def _source(env: dict[str, str]) -> dict[str, Any]:
    """Where counts come from: our own tables, or the app's unread function (attached)."""
    source = env.get("COUNTS_SOURCE") or "own"
    if source not in SOURCES:
        raise RuntimeError(f"COUNTS_SOURCE must be 'own' or 'attached', got {source!r}")
    function = env.get("COUNTS_UNREAD_FUNCTION") or None
    if source == "attached" and function is None:
        raise RuntimeError(
            "COUNTS_SOURCE=attached needs COUNTS_UNREAD_FUNCTION: the app's function "
            "(user_ids uuid[]) RETURNS TABLE (user_id uuid, conversation_id uuid, unread bigint), "
            "with its schema, like public.counts_unread")
    return {"SOURCE": source,
            "UNREAD_FUNCTION": parse_function_name(function) if source == "attached" else None}


def _urls(env: dict[str, str], name: str) -> list[str]:
    """A comma-separated list of Postgres URLs, each checked at start-up."""
    urls = list(_words(env, name))
    for url in urls:
        try:
            if not url.startswith(("postgresql://", "postgres://")):
                raise psycopg2.ProgrammingError("not a postgresql:// URL")
            psycopg2.extensions.parse_dsn(url)
        except psycopg2.ProgrammingError as error:
            # Never the URL itself in the message: it may carry a password.
            raise RuntimeError(f"{name} holds a URL that is not a Postgres URL: {error}") from None
    return urls


def load_config(env: dict[str, str] | None = None,
                overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The app config: environment variables (COUNTS_*, DATABASE_URL, REDIS_URL), then overrides."""
    env = dict(os.environ if env is None else env)
    config = {
        "COUNTS_ENV": env.get("COUNTS_ENV", "production"),
        # Where gunicorn listens: the API, and the operators' address (metrics, detailed
        # readiness; empty: none), which must not be reachable from where the API is.
        "BIND": env.get("COUNTS_BIND") or "127.0.0.1:8000",
        "ADMIN_BIND": env.get("COUNTS_ADMIN_BIND", "127.0.0.1:8002") or None,
        # Identity (counts.auth): HS256 tokens with the secret, asymmetric ones with the JWKS.
        "JWT_SECRET": env.get("COUNTS_JWT_SECRET") or None,
        "JWKS_URL": env.get("COUNTS_JWKS_URL") or None,
        "JWKS_REFRESH": _number(env, "COUNTS_JWKS_REFRESH", 300.0, float),
        # None when unset: then Supabase's "authenticated", and secret-signed tokens may omit aud.
        "JWT_AUDIENCE": _words(env, "COUNTS_JWT_AUDIENCE") or None,
        "JWT_ISSUER": env.get("COUNTS_JWT_ISSUER") or None,
        "JWT_LEEWAY": _number(env, "COUNTS_JWT_LEEWAY", 30.0, float),
        # The `role` of user tokens; empty for providers whose tokens carry no `role` claim.
        "JWT_USER_ROLE": env.get("COUNTS_JWT_USER_ROLE", "authenticated") or None,
        # Opt-in: provider tokens with our issuer and one of these audiences are services'.
        "JWT_SERVICE_AUDIENCE": _words(env, "COUNTS_JWT_SERVICE_AUDIENCE") or None,
        "DATABASE_URL": env.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/counts"),
        # Postgres read replicas for the 200 path (comma-separated); writes stay on DATABASE_URL.
        "DATABASE_REPLICA_URLS": _urls(env, "DATABASE_REPLICA_URLS"),
        # redis://, rediss://, redis+sentinel://... or redis+cluster://... (counts.stores).
        "REDIS_URL": env.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        "POLL_INTERVAL": _number(env, "COUNTS_POLL_INTERVAL", 30),
        "MARKER_TTL": _number(env, "COUNTS_MARKER_TTL", 30 * 24 * 3600),
        # A hung dependency must cost a request this long at most, never a worker forever.
        "PG_TIMEOUT": _number(env, "COUNTS_PG_TIMEOUT", 2.0, float),
        "REDIS_TIMEOUT": _number(env, "COUNTS_REDIS_TIMEOUT", 0.25, float),
        "PG_POOL_SIZE": _number(env, "COUNTS_PG_POOL_SIZE", 8),
        # Requests per minute: per user (polls and writes alike), and per IP without a valid
        # token. 0 turns a limit off. 120 lets a user poll every 3 s from six devices.
        "RATE_LIMIT": _number(env, "COUNTS_RATE_LIMIT", 120),
        "ANONYMOUS_RATE_LIMIT": _number(env, "COUNTS_ANONYMOUS_RATE_LIMIT", 60),
        # Proxies in front of the service that append to X-Forwarded-For. Behind a load balancer
        # set it to 1, or every anonymous caller shares the balancer's address (and its limit).
        "TRUSTED_PROXIES": _number(env, "COUNTS_TRUSTED_PROXIES", 0),
        # Requests a worker works on at once before it counts as saturated (gthread: its threads;
        # gevent: requests being answered, not the live connections waiting for a change).
        "THREADS": _number(env, "COUNTS_THREADS", 8),
        # Redis sockets per worker; requests beyond wait up to REDIS_TIMEOUT for one.
        "REDIS_POOL_SIZE": _number(env, "COUNTS_REDIS_POOL_SIZE", 64),
        # Live connections (long-polls, SSE, WebSocket). A long-poll waits at most MAX_WAIT s
        # (proxies cut idle connections at 55-60 s); a worker holds at most MAX_STREAMS of them,
        # past which long-polls are answered at once and new streams get 503.
        "MAX_WAIT": _number(env, "COUNTS_MAX_WAIT", 25),
        "MAX_STREAMS": _number(env, "COUNTS_MAX_STREAMS", 10_000),
        "STREAM_HEARTBEAT": _number(env, "COUNTS_STREAM_HEARTBEAT", 15.0, float),
        "WS_PING_INTERVAL": _number(env, "COUNTS_WS_PING_INTERVAL", 30.0, float),
        "STREAM_TICKET_TTL": _number(env, "COUNTS_STREAM_TICKET_TTL", 30),
        # On SIGTERM, live connections are closed at random moments over this many seconds.
        "STREAM_SHUTDOWN_SECONDS": _number(env, "COUNTS_STREAM_SHUTDOWN_SECONDS", 5.0, float),
        # Origins allowed to call from a browser (comma-separated, exact); empty: no CORS.
        "CORS_ORIGINS": list(_words(env, "COUNTS_CORS_ORIGINS")),
        # X-Poll-Interval is multiplied by this while a worker is saturated.
        "BUSY_POLL_FACTOR": _number(env, "COUNTS_BUSY_POLL_FACTOR", 2),
        "RETRY_AFTER": _number(env, "COUNTS_RETRY_AFTER", 5),
        "OUTBOX_DRAIN_INTERVAL": _number(env, "COUNTS_OUTBOX_DRAIN_INTERVAL", 2.0, float),
        # Request lines are written in batches, at most this many seconds late (logs.AccessLog).
        "LOG_FLUSH_INTERVAL": _number(env, "COUNTS_LOG_FLUSH_SECONDS", 1.0, float),
        # Requests larger than this are refused with 413 before any parsing.
        "MAX_CONTENT_LENGTH": _number(env, "COUNTS_MAX_BODY_BYTES", 1024 * 1024),
        # own: our tables and write API; attached: the app's tables, through its unread function.
        **_source(env),
        **push_settings(env),
        **(overrides or {}),
    }
    try:
        stores.parse_redis_url(config["REDIS_URL"])
    except ValueError as error:
        raise RuntimeError(str(error)) from None
    for name in ("MAX_WAIT", "STREAM_HEARTBEAT", "WS_PING_INTERVAL", "STREAM_TICKET_TTL",
                 "REDIS_POOL_SIZE"):
        if config[name] <= 0:
            raise RuntimeError(f"COUNTS_{name} must be positive, got {config[name]!r}")
    if config["ADMIN_BIND"] is not None and config["ADMIN_BIND"] == config["BIND"]:
        raise RuntimeError("COUNTS_ADMIN_BIND must differ from COUNTS_BIND: the metrics and the "
                           "detailed readiness are for operators, not for the API's callers")
    _check_identity(config)
    check_push_settings(config)
    return config


def _check_identity(config: dict[str, Any]) -> None:
    """At least one key source outside development; sane JWKS settings. Fails at start-up."""
    if not config["JWT_SECRET"] and not config["JWKS_URL"]:
        if config["COUNTS_ENV"] != "development":
            # An unset secret must not quietly become a well-known one in production.
            raise RuntimeError(
                "Neither COUNTS_JWT_SECRET nor COUNTS_JWKS_URL is set. Set one or both (see the "
                "README's 'Using counts with Supabase'), or set COUNTS_ENV=development to use "
                "the built-in development secret."
            )
        config["JWT_SECRET"] = DEVELOPMENT_JWT_SECRET
    url = config["JWKS_URL"]
    if url:
        _check_jwks_url(url)
    service_audience = config["JWT_SERVICE_AUDIENCE"]
    if service_audience:
        if not (url and config["JWT_ISSUER"]):
            raise RuntimeError("COUNTS_JWT_SERVICE_AUDIENCE needs COUNTS_JWKS_URL and "
                               "COUNTS_JWT_ISSUER: it names the provider tokens that are services'")
        shared = set(service_audience) & set(config["JWT_AUDIENCE"] or ("authenticated",))
        if shared:
            raise RuntimeError(f"COUNTS_JWT_SERVICE_AUDIENCE {sorted(shared)} is also a user "
                               "audience: every user token would have service rights")
    if not (math.isfinite(config["JWKS_REFRESH"]) and config["JWKS_REFRESH"] > 0):
        raise RuntimeError("COUNTS_JWKS_REFRESH must be a positive number of seconds")
    if not (math.isfinite(config["JWT_LEEWAY"]) and config["JWT_LEEWAY"] >= 0):
        raise RuntimeError("COUNTS_JWT_LEEWAY must be a number of seconds, 0 or more")


def _check_jwks_url(url: str) -> None:
    """https, or http to this machine only: keys fetched over plain http from elsewhere can be
    replaced by anyone on the path, and every token they sign is accepted."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RuntimeError(f"COUNTS_JWKS_URL must be an https URL, got {url!r}")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise RuntimeError("COUNTS_JWKS_URL must be https: signing keys fetched over plain http "
                           "can be swapped by anyone on the path (http is allowed only to "
                           f"localhost), got {url!r}")


def _is_loopback(host: str) -> bool:
    """localhost, or an address in 127.0.0.0/8 or ::1 (no name lookup: it must be evident)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# A Web Push allowlist entry: a host name or *.domain, with an optional port.
_HOST_RULE = re.compile(r"(?:\*\.)?[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]{1,5})?")


def push_settings(env: dict[str, str]) -> dict[str, Any]:
    """The push dispatcher's and providers' settings (counts.push); unset providers stay None."""
    return {
        # A burst for one user within this many seconds becomes one push with the latest total.
        "PUSH_COALESCE": _number(env, "COUNTS_PUSH_COALESCE", 2.0, float),
        # An undelivered push older than this is dropped and counted: an old alert is worse than none.
        "PUSH_MAX_AGE": _number(env, "COUNTS_PUSH_MAX_AGE", 24 * 3600.0, float),
        "PUSH_BATCH": _number(env, "COUNTS_PUSH_BATCH", 100),
        "PUSH_CONCURRENCY": _number(env, "COUNTS_PUSH_CONCURRENCY", 32),
        "PUSH_POLL_INTERVAL": _number(env, "COUNTS_PUSH_POLL_INTERVAL", 5.0, float),
        "PUSH_TIMEOUT": _number(env, "COUNTS_PUSH_TIMEOUT", 10.0, float),
        "PUSH_RETRY_BASE": _number(env, "COUNTS_PUSH_RETRY_BASE", 1.0, float),
        "PUSH_RETRY_MAX": _number(env, "COUNTS_PUSH_RETRY_MAX", 900.0, float),
        "PUSH_MAX_DEVICES": _number(env, "COUNTS_PUSH_MAX_DEVICES", 10),
        "PUSH_METRICS_PORT": _number(env, "COUNTS_PUSH_METRICS_PORT", 0),
        "PUSH_METRICS_HOST": env.get("COUNTS_PUSH_METRICS_HOST", "127.0.0.1"),
        # CA bundle for outbound TLS to the providers (default: certifi's); for fakes and proxies.
        "PUSH_CA_FILE": env.get("COUNTS_PUSH_CA_FILE") or None,
        "VAPID_PRIVATE_KEY": env.get("COUNTS_VAPID_PRIVATE_KEY") or None,
        "VAPID_SUBJECT": env.get("COUNTS_VAPID_SUBJECT") or None,
        "WEBPUSH_ALLOWED_HOSTS": _words(env, "COUNTS_WEBPUSH_ALLOWED_HOSTS", DEFAULT_WEBPUSH_HOSTS),
        "APNS_KEY_FILE": env.get("COUNTS_APNS_KEY_FILE") or None,
        "APNS_KEY_ID": env.get("COUNTS_APNS_KEY_ID") or None,
        "APNS_TEAM_ID": env.get("COUNTS_APNS_TEAM_ID") or None,
        # Override Apple's hosts (host[:port]), for a local fake or a proxy.
        "APNS_HOST": env.get("COUNTS_APNS_HOST") or "api.push.apple.com",
        "APNS_SANDBOX_HOST": env.get("COUNTS_APNS_SANDBOX_HOST") or "api.sandbox.push.apple.com",
        "APNS_TOPICS": _words(env, "COUNTS_APNS_TOPICS"),
        "FCM_CREDENTIALS_FILE": env.get("COUNTS_FCM_CREDENTIALS_FILE") or None,
        "FCM_URL": env.get("COUNTS_FCM_URL") or "https://fcm.googleapis.com",
    }


def check_push_settings(config: dict[str, Any]) -> None:
    """Half-configured providers fail at start-up, not at the first push."""
    if config["VAPID_PRIVATE_KEY"]:
        subject = config["VAPID_SUBJECT"] or ""
        if not subject.startswith(("mailto:", "https:")):
            raise RuntimeError("COUNTS_VAPID_SUBJECT must be a mailto: or https: URI when "
                               f"COUNTS_VAPID_PRIVATE_KEY is set, got {subject!r}")
    apns = [config[name] for name in ("APNS_KEY_FILE", "APNS_KEY_ID", "APNS_TEAM_ID")]
    if any(apns) and not all(apns):
        raise RuntimeError("Set all of COUNTS_APNS_KEY_FILE, COUNTS_APNS_KEY_ID and "
                           "COUNTS_APNS_TEAM_ID, or none of them")
    for pattern in config["WEBPUSH_ALLOWED_HOSTS"]:
        _, colon, port = pattern.rpartition(":")
        if not _HOST_RULE.fullmatch(pattern) or (colon and not 0 < int(port) <= 65535):
            raise RuntimeError(f"COUNTS_WEBPUSH_ALLOWED_HOSTS: {pattern!r} is not host[:port] or "
                               "*.domain[:port]")
    for name in ("PUSH_COALESCE", "PUSH_MAX_AGE", "PUSH_TIMEOUT", "PUSH_RETRY_BASE"):
        if config[name] <= 0:
            raise RuntimeError(f"COUNTS_{name} must be positive, got {config[name]}")
    for name in ("PUSH_BATCH", "PUSH_CONCURRENCY", "PUSH_MAX_DEVICES"):
        if config[name] < 1:
            raise RuntimeError(f"COUNTS_{name} must be at least 1, got {config[name]}")
