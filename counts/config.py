"""Configuration from the environment, with defaults a local run can live with."""

import os
from typing import Any

import psycopg2.extensions

from counts import stores

DEVELOPMENT_JWT_SECRET = "counts-development-secret-do-not-deploy"  # noqa: S105 - by design


def _number(env: dict[str, str], name: str, default: float, kind: type = int) -> Any:
    """Read a numeric setting, failing at start-up (not at first request) on garbage."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return kind(raw)
    except ValueError:
        raise RuntimeError(f"{name} must be a number, got {raw!r}") from None


def _urls(env: dict[str, str], name: str) -> list[str]:
    """A comma-separated list of Postgres URLs, each checked at start-up."""
    urls = [url.strip() for url in env.get(name, "").split(",") if url.strip()]
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
        "JWT_SECRET": env.get("COUNTS_JWT_SECRET"),
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
        # Must match gunicorn's threads: the load gauge calls a worker saturated by this number.
        "THREADS": _number(env, "COUNTS_THREADS", 8),
        # X-Poll-Interval is multiplied by this while a worker is saturated.
        "BUSY_POLL_FACTOR": _number(env, "COUNTS_BUSY_POLL_FACTOR", 2),
        "RETRY_AFTER": _number(env, "COUNTS_RETRY_AFTER", 5),
        "OUTBOX_DRAIN_INTERVAL": _number(env, "COUNTS_OUTBOX_DRAIN_INTERVAL", 2.0, float),
        # Request lines are written in batches, at most this many seconds late (logs.AccessLog).
        "LOG_FLUSH_INTERVAL": _number(env, "COUNTS_LOG_FLUSH_SECONDS", 1.0, float),
        # Requests larger than this are refused with 413 before any parsing.
        "MAX_CONTENT_LENGTH": _number(env, "COUNTS_MAX_BODY_BYTES", 1024 * 1024),
        **(overrides or {}),
    }
    try:
        stores.parse_redis_url(config["REDIS_URL"])
    except ValueError as error:
        raise RuntimeError(str(error)) from None
    if not config["JWT_SECRET"]:
        if config["COUNTS_ENV"] != "development":
            # An unset secret must not quietly become a well-known one in production.
            raise RuntimeError(
                "COUNTS_JWT_SECRET is not set. Set it, or set COUNTS_ENV=development "
                "to use the built-in development secret."
            )
        config["JWT_SECRET"] = DEVELOPMENT_JWT_SECRET
    return config
