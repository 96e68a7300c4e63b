"""Fixtures for attached mode: examples/supabase-chat on a database of its own, and the service
attached to it (in-process, or under gunicorn)."""

import os

import pytest

from counts.app import create_app
from tests.support.environment import settings_for
from tests.support.services import Gunicorn
from tests.support.supabase_chat import attached_env, attached_settings, example_database


@pytest.fixture(scope="session")
def chat():
    """The example on a database of this run's own: counts' schema, then the app's files."""
    with example_database(f"counts_test_attached_{os.getpid()}") as made:
        yield made


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


@pytest.fixture
def listener(chat, request):
    """A connection LISTENing on the test module's CHANNEL (counts.bump()'s, or the push
    dispatchers')."""
    with chat.listening(request.module.CHANNEL) as conn:
        yield conn


@pytest.fixture
def attached_app(chat):
    """The app in attached mode, in-process (no relay: the tests drive it)."""
    app = create_app(settings_for(attached_settings(chat)))
    yield app
    app.extensions["counts"].close()


@pytest.fixture(scope="module", params=["gthread", "gevent"])
def attached_server(request, chat):
    """The service under gunicorn (2 workers) attached to the example, per worker class."""
    server = Gunicorn(attached_env(chat, GUNICORN_CMD_ARGS=f"--worker-class {request.param}")).start()
    yield server
    server.stop()
