"""The service in attached mode: counts from the app's function with the usual HTTP rules, write
endpoints that refuse, the bump API, batch and CLI at work, and a start-up that refuses a wrong
COUNTS_UNREAD_FUNCTION with one clear line."""

import os
import subprocess
import sys

import pytest

from counts.app import create_app
from tests.support import ROOT
from tests.support.api import Api, Tokens, new_user
from tests.support.environment import settings_for
from tests.support.services import Gunicorn, PrivateRedis, free_port
from tests.support.supabase_chat import attached_env, attached_settings

WRITES = [("post", "/v1/conversations"), ("delete", "/v1/conversations/{c}"),
          ("post", "/v1/conversations/{c}/members"), ("delete", "/v1/conversations/{c}/members/{u}"),
          ("post", "/v1/conversations/{c}/messages"), ("delete", "/v1/conversations/{c}/messages/{m}"),
          ("post", "/v1/conversations/{c}/read"), ("post", "/v1/conversations/{c}/unread"),
          ("patch", "/v1/conversations/{c}/members/{u}")]


@pytest.fixture
def api(attached_app) -> Api:
    return Api(attached_app.test_client(), Tokens())


def test_a_user_chooses_their_badge_policy_in_attached_mode_too(api, writer):
    alice, bob = new_user(), new_user()
    conversation = writer.create_conversation(alice, [bob])
    writer.send(conversation, alice)
    first = api.counts(bob)
    assert (first.get_json()["total"], first.get_json()["badge"]) == (1, 1)
    for policy, status in (("messages", 304), ("none", 200)):  # the server's by name: no change
        chosen = api.client.patch(f"/v1/users/{bob}/settings", headers=api.tokens.user(bob),
                                  json={"badge_policy": policy})
        assert chosen.get_json() == {"user_id": str(bob), "badge_policy": policy}
        assert api.counts(bob, etag=first.headers["ETag"]).status_code == status
    assert api.counts(bob).get_json()["badge"] == 0


def test_counts_come_from_the_apps_function_with_etags_and_304s(api, writer):
    alice, bob = new_user(), new_user()
    conversation = writer.create_conversation(alice, [bob])
    writer.send(conversation, alice)
    writer.send(conversation, alice)
    first = api.counts(bob)
    assert first.status_code == 200
    assert first.get_json() == {
        "user_id": str(bob), "total": 2, "unread_conversations": 1, "mentions": 0, "badge": 2,
        "threads": {"unread": 0, "unread_threads": 0, "mentions": 0},
        "conversations": [{"conversation_id": conversation, "unread": 2, "mentions": 0,
                           "notify": "all", "marked_unread": False, "parent_id": None}]}
    assert api.counts(bob, etag=first.headers["ETag"]).status_code == 304
    assert api.counts(bob, etag=first.headers["ETag"], method="head").status_code == 304


def test_batch_answers_from_the_apps_function(api, writer):
    alice, bob = new_user(), new_user()
    conversation = writer.create_conversation(alice, [bob])
    writer.send(conversation, bob)
    etag = api.counts(bob).headers["ETag"]
    response = api.client.post("/v1/unread-counts/batch", headers=api.tokens.service(),
                               json={"users": [{"user_id": str(alice), "etag": None},
                                               {"user_id": str(bob), "etag": etag}]})
    assert response.status_code == 200
    fresh, unchanged = response.get_json()["users"]
    assert (fresh["status"], fresh["counts"]["total"]) == (200, 1)
    assert unchanged == {"user_id": str(bob), "status": 304, "etag": etag}


@pytest.mark.parametrize(("method", "path"), WRITES)
def test_write_endpoints_answer_404_problem_json(api, method, path):
    path = path.format(c=new_user(), u=new_user(), m=new_user())
    response = getattr(api.client, method)(path, headers=api.tokens.service(), json={})
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    assert "COUNTS_SOURCE=attached" in response.get_json()["detail"]


def test_a_method_no_write_endpoint_has_is_405_problem_json(api):
    response = api.client.put("/v1/conversations", headers=api.tokens.service(), json={})
    assert response.status_code == 405
    assert response.mimetype == "application/problem+json"


def test_the_bump_api_works_and_queues_into_counts_schema_when_redis_is_down(chat, tmp_path):
    redis_server = PrivateRedis(tmp_path).start()
    app = create_app(settings_for({**attached_settings(chat), "REDIS_URL": redis_server.url,
                                          "COUNTS_REDIS_TIMEOUT": 0.3}))
    try:
        api = Api(app.test_client(), Tokens())
        bob = new_user()
        etag = api.counts(bob).headers["ETag"]
        bumped = api.client.post("/v1/markers/bump", headers=api.tokens.service(),
                                 json={"user_ids": [str(bob)]})
        assert (bumped.status_code, bumped.get_json()) == (200, {"bumped": 1})
        assert api.counts(bob, etag=etag).status_code == 200
        redis_server.stop()
        queued = api.client.post("/v1/markers/bump", headers=api.tokens.service(),
                                 json={"user_ids": [str(bob)]})
        assert (queued.status_code, queued.get_json()) == (202, {"queued": 1})
        assert chat.queued_for([bob]) == 1  # in counts.marker_outbox, where the relay drains
    finally:
        app.extensions["counts"].close()
        redis_server.stop()


def test_openapi_leaves_the_write_endpoints_out(api):
    paths = api.client.get("/openapi.json").get_json()["paths"]
    assert not [path for path in paths if path.startswith("/v1/conversations")]
    assert {"/v1/users/{user_id}/unread-counts", "/v1/unread-counts/batch",
            "/v1/markers/bump"} <= set(paths)


def test_cli_upgrade_is_idempotent_and_notes_a_missing_function(chat):
    settings = attached_settings(chat)
    runner = create_app(settings_for(settings)).test_cli_runner()
    result = runner.invoke(args=["db", "upgrade"])
    assert (result.exit_code, result.output.strip()) == (0, "schema is up to date")
    missing = create_app(settings_for({**settings, "COUNTS_UNREAD_FUNCTION": "public.not_yet"}))
    result = missing.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.exit_code == 0
    assert "note: COUNTS_UNREAD_FUNCTION public.not_yet: it does not exist" in result.output
    for app in (runner.app, missing):
        app.extensions["counts"].close()


def test_cli_drains_the_counts_outbox_and_bumps(chat):
    app = create_app(settings_for(attached_settings(chat)))
    try:
        res = app.extensions["counts"]
        user = new_user()
        etag = Api(app.test_client(), Tokens()).counts(user).headers["ETag"]
        with chat.admin() as conn, conn.cursor() as cur:  # no relay runs here: the row waits
            cur.execute("SELECT counts.bump(%s::uuid[])", ([str(user)],))
        result = app.test_cli_runner().invoke(args=["drain-outbox"])
        assert result.exit_code == 0 and result.output.startswith("bumped ")
        assert chat.queued_for([user]) == 0
        assert Api(app.test_client(), Tokens()).counts(user, etag=etag).status_code == 200
        assert res.source.name == "attached"
    finally:
        app.extensions["counts"].close()


# --- start-up ----------------------------------------------------------------------------------

def start_gunicorn(env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run gunicorn in the foreground until it exits (or 30 s): its exit status and output."""
    return subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"], cwd=ROOT,
        env={**os.environ, **env, "COUNTS_BIND": f"127.0.0.1:{free_port()}",
             "COUNTS_ADMIN_BIND": f"127.0.0.1:{free_port()}"},
        capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.parametrize(("function", "reason"), [
    ("public.counts_unread_typo", "it does not exist"),
    ("public.is_participant", "it takes other arguments: is_participant(uuid) RETURNS boolean"),
])
def test_gunicorn_refuses_a_wrong_function_with_one_clear_line(chat, function, reason):
    done = start_gunicorn(attached_env(chat, COUNTS_UNREAD_FUNCTION=function))
    assert done.returncode == 1
    assert f"Error: COUNTS_UNREAD_FUNCTION {function}: {reason}" in done.stderr
    assert "Traceback" not in done.stderr
    assert "Booting worker" not in done.stderr  # refused before any worker started


def test_gunicorn_refuses_a_bad_source_setting_with_one_clear_line(chat):
    done = start_gunicorn(attached_env(chat, COUNTS_SOURCE="theirs"))
    assert done.returncode == 1
    assert done.stderr.strip() == "counts: COUNTS_SOURCE must be one of own, attached, got 'theirs'"
    assert "Traceback" not in done.stderr



def test_gunicorn_starts_anyway_when_postgres_cannot_be_reached(chat, tmp_path):
    """Postgres down is degraded, not down (invariant 7): the check warns, the service starts."""
    log = tmp_path / "gunicorn.log"
    server = Gunicorn(attached_env(chat, DATABASE_URL="postgresql://postgres@127.0.0.1:1/nothing",
                                   COUNTS_PG_TIMEOUT="1"), log_path=log).start()
    try:
        assert "could not check COUNTS_SOURCE=attached" in log.read_text()
        assert "starting anyway" in log.read_text()
    finally:
        server.stop()


def test_gevent_workers_start_without_gevents_late_patching_warning(chat, tmp_path):
    """The master checks the app's function before it forks; nothing it imports for that may
    make gevent patch ssl after ssl was imported (a warning in every worker's log, and a real
    hazard: an ssl module half patched)."""
    log = tmp_path / "gunicorn.log"
    with Gunicorn(attached_env(chat), log_path=log) as server:
        assert server.worker_pids()  # every worker started, with its patches applied
    text = log.read_text()
    assert "Booting worker" in text
    assert "Monkey-patching" not in text and "MonkeyPatchWarning" not in text
