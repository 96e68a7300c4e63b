"""Fixtures for attached mode: examples/supabase-chat on a database of its own, and the service
attached to it (in-process, or under gunicorn)."""

import os

import pytest

from counts.app import create_app
from counts.postgres import migrations
from counts.postgres.pool import Database
from counts.settings import function_name
from counts.sources.attached import AttachedSource
from tests.conftest import ADMIN_URL, MARKER_TTL, REDIS_URL, SECRET, settings_for, throwaway_database
from tests.support.services import Gunicorn
from tests.support.supabase_chat import UNREAD_FUNCTION, Chat, drop_roles, run_suffix

# How long a test waits for the relay to move a marker. The relay takes milliseconds (see
# bench/relay.py); this only bounds a test on a loaded machine.
RELAY_BOUND = 10.0


def attached_source() -> AttachedSource:
    """The source the example's function makes."""
    return AttachedSource(function_name(UNREAD_FUNCTION, "COUNTS_UNREAD_FUNCTION"))


@pytest.fixture(scope="session")
def chat():
    """The example on a database of this run's own: counts' schema, then the app's files."""
    suffix = run_suffix()
    try:
        with throwaway_database(f"counts_test_attached_{os.getpid()}") as url:
            db = Database(url, timeout=10, pool_size=1, schema="counts")
            try:
                migrations.upgrade(db, "attached", "counts")
            finally:
                db.close()
            made = Chat(url, suffix)
            made.load()
            yield made
    finally:
        drop_roles(ADMIN_URL, suffix)


@pytest.fixture
def owner(chat):
    """A transaction as the owner, rolled back after the test (so nothing reaches the relay)."""
    with chat.admin() as conn:
        conn.autocommit = False
        with conn.cursor() as cur:
            yield cur
        conn.rollback()


@pytest.fixture
def writer(chat):
    """A PostgREST-like session for the test's writes."""
    session = chat.writer()
    yield session
    session.close()


def attached_settings(chat: Chat) -> dict:
    """The environment of the app in attached mode on the example's database, in-process."""
    return attached_env(chat, COUNTS_PG_TIMEOUT="2")


@pytest.fixture
def attached_app(chat):
    """The app in attached mode, in-process (no relay: the tests drive it)."""
    app = create_app(settings_for(attached_settings(chat)))
    yield app
    app.extensions["counts"].close()


def attached_env(chat: Chat, **extra: str) -> dict[str, str]:
    """The environment of the service under gunicorn in attached mode. No drainer: what moves a
    marker within RELAY_BOUND is the relay."""
    return {"DATABASE_URL": chat.url, "REDIS_URL": REDIS_URL, "COUNTS_JWT_SECRET": SECRET,
            "COUNTS_SOURCE": "attached", "COUNTS_UNREAD_FUNCTION": UNREAD_FUNCTION,
            "COUNTS_POLL_INTERVAL": "7", "COUNTS_OUTBOX_DRAIN_INTERVAL": "0",
            "COUNTS_MARKER_TTL": str(MARKER_TTL), "COUNTS_RATE_LIMIT": "0",
            "COUNTS_ANONYMOUS_RATE_LIMIT": "0", **extra}


@pytest.fixture(scope="module", params=["gthread", "gevent"])
def attached_server(request, chat):
    """The service under gunicorn (2 workers) attached to the example, per worker class."""
    server = Gunicorn(attached_env(chat, GUNICORN_CMD_ARGS=f"--worker-class {request.param}")).start()
    yield server
    server.stop()
