"""Where the tests' Postgres and Redis are, and the environments the service under test runs with.

Every environment here is a plain dict of the variables the service reads, as a deploy sets them:
the in-process app's (app_env), gunicorn's (gunicorn_env), and the fault matrix's (fault_env).
"""

import os

from counts.settings import Settings

# make test points these at the local services (or embedded ones); the defaults are the local ones.
ADMIN_URL = os.environ.get("COUNTS_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("COUNTS_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
MARKER_TTL = 900
SECRET = "test-secret-0123456789-0123456789"

# The settings every service under test shares: the test secret and marker TTL, no rate limit.
COMMON = {"COUNTS_JWT_SECRET": SECRET, "COUNTS_MARKER_TTL": str(MARKER_TTL),
          "COUNTS_RATE_LIMIT": "0", "COUNTS_ANONYMOUS_RATE_LIMIT": "0"}


def env_value(value) -> str:
    """A test's setting as its environment variable holds it: lists comma-separated."""
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


def settings_for(env: dict) -> Settings:
    """The settings of an environment given as a dict of any values (`None` leaves one out)."""
    return Settings.from_env({key: env_value(value) for key, value in env.items()
                              if value is not None})


def app_env(database_url: str) -> dict[str, str]:
    """An in-process app on the test database and Redis db. No clock-skew leeway: a token
    expires at its `exp` exactly (tests/identity/test_auth_supabase.py covers the leeway); no
    drainer: a test drains the outbox itself."""
    return {"DATABASE_URL": database_url, "REDIS_URL": REDIS_URL, **COMMON,
            "COUNTS_JWT_LEEWAY": "0", "COUNTS_POLL_INTERVAL": "7",
            "COUNTS_OUTBOX_DRAIN_INTERVAL": "0", "COUNTS_PG_TIMEOUT": "2"}


def gunicorn_env(database_url: str, redis_url: str = REDIS_URL, **extra: str) -> dict[str, str]:
    """The service under gunicorn on the test database and a Redis (the test db by default)."""
    return {"DATABASE_URL": database_url, "REDIS_URL": redis_url, **COMMON,
            "COUNTS_JWT_LEEWAY": "0", "COUNTS_POLL_INTERVAL": "7",
            "COUNTS_OUTBOX_DRAIN_INTERVAL": "0.5",
            # Streams still open when a test stops its server close within half a second, not
            # spread over the 5 s a deploy gets (tests/live/test_streams.py tests the spread).
            "COUNTS_STREAM_SHUTDOWN_SECONDS": "0.5", **extra}


# The fault matrix's: small timeouts so hung dependencies cost little, a fast drainer so repairs
# come quickly (and no rate limit: the pollers poll far faster than a real client may).
FAULT_PG_TIMEOUT = 1.0
FAULT_REDIS_TIMEOUT = 0.3
FAULT_DRAIN_INTERVAL = 0.2


def fault_env(database_url: str, redis_url: str) -> dict[str, str]:
    """The service's environment for the fault tests."""
    return {"DATABASE_URL": database_url, "REDIS_URL": redis_url, **COMMON,
            "COUNTS_POLL_INTERVAL": "1", "COUNTS_OUTBOX_DRAIN_INTERVAL": str(FAULT_DRAIN_INTERVAL),
            "COUNTS_PG_TIMEOUT": str(FAULT_PG_TIMEOUT), "COUNTS_REDIS_TIMEOUT": str(FAULT_REDIS_TIMEOUT),
            "COUNTS_STREAM_SHUTDOWN_SECONDS": "0.5"}
