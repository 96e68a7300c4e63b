"""Configuration from the environment, with defaults a local run can live with."""

import os
from typing import Any

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


def load_config(env: dict[str, str] | None = None,
                overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The app config: environment variables (COUNTS_*, DATABASE_URL, REDIS_URL), then overrides."""
    env = dict(os.environ if env is None else env)
    config = {
        "COUNTS_ENV": env.get("COUNTS_ENV", "production"),
        "JWT_SECRET": env.get("COUNTS_JWT_SECRET"),
        "DATABASE_URL": env.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/counts"),
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
        "CORS_ORIGINS": [o.strip() for o in env.get("COUNTS_CORS_ORIGINS", "").split(",")
                         if o.strip()],
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
    for name in ("MAX_WAIT", "STREAM_HEARTBEAT", "WS_PING_INTERVAL", "STREAM_TICKET_TTL",
                 "REDIS_POOL_SIZE"):
        if config[name] <= 0:
            raise RuntimeError(f"COUNTS_{name} must be positive, got {config[name]!r}")
    if not config["JWT_SECRET"]:
        if config["COUNTS_ENV"] != "development":
            # An unset secret must not quietly become a well-known one in production.
            raise RuntimeError(
                "COUNTS_JWT_SECRET is not set. Set it, or set COUNTS_ENV=development "
                "to use the built-in development secret."
            )
        config["JWT_SECRET"] = DEVELOPMENT_JWT_SECRET
    return config
