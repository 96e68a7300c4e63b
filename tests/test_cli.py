"""The flask CLI commands: db upgrade, token, bump and drain-outbox."""

import jwt
import psycopg2
import pytest

from counts.app import create_app
from counts.bumps import outbox
from counts.identity import SERVICE_ROLE, USER_ROLE
from counts.postgres import migrations
from tests.support.api import new_user
from tests.support.environment import SECRET, settings_for
from tests.support.markers import read_marker
from tests.support.postgres import throwaway_database


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def invoke_ok(runner, *args) -> str:
    """Run a command that must succeed; its output, stripped."""
    result = runner.invoke(args=list(args))
    assert result.exit_code == 0, result.output
    return result.output.strip()


def decode(token: str) -> dict:
    return jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_aud": False})


# --- db upgrade --------------------------------------------------------------------------------

def migration_rows(pg_url: str) -> int:
    conn = psycopg2.connect(pg_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM schema_migrations")
            return cur.fetchone()[0]
    finally:
        conn.close()


def test_db_upgrade_twice_applies_then_reports_up_to_date(config):
    with throwaway_database("counts_test_cli") as url:
        app = create_app(settings_for({**config, "DATABASE_URL": url}))
        try:
            runner = app.test_cli_runner()
            versions = [version for version, _ in migrations.available()]
            assert invoke_ok(runner, "db", "upgrade") == "applied: " + ", ".join(versions)
            rows = migration_rows(url)
            assert rows == len(versions) >= 3
            assert invoke_ok(runner, "db", "upgrade") == "schema is up to date"
            assert migration_rows(url) == rows
        finally:
            app.extensions["counts"].db.close()


# --- token -------------------------------------------------------------------------------------

def test_token_is_accepted_by_the_api_for_that_user(runner, client):
    user, other = new_user(), new_user()
    token = invoke_ok(runner, "token", str(user))
    assert decode(token)["role"] == USER_ROLE
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get(f"/v1/users/{user}/unread-counts", headers=headers).status_code == 200
    assert client.get(f"/v1/users/{other}/unread-counts", headers=headers).status_code == 403


def test_service_token_is_a_service_token(runner, client):
    token = invoke_ok(runner, "token", "--service", "billing")
    claims = decode(token)
    assert (claims["role"], claims["sub"]) == (SERVICE_ROLE, "billing")
    response = client.post("/v1/conversations", headers={"Authorization": f"Bearer {token}"},
                           json={"member_ids": [str(new_user())]})
    assert response.status_code == 201


def test_user_token_is_shaped_as_supabase_with_the_configured_audience_and_issuer(app_factory):
    app = app_factory(COUNTS_JWT_AUDIENCE="counts,mobile",
                      COUNTS_JWT_ISSUER="https://ref.supabase.co/auth/v1")
    user = new_user()
    token = invoke_ok(app.test_cli_runner(), "token", str(user))
    claims = decode(token)
    assert (claims["aud"], claims["iss"], claims["role"]) == ("counts", "https://ref.supabase.co/auth/v1",
                                                              USER_ROLE)
    response = app.test_client().get(f"/v1/users/{user}/unread-counts",
                                     headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200  # the service's own audience and issuer checks pass


def test_user_token_carries_supabases_audience_by_default(runner):
    assert decode(invoke_ok(runner, "token", str(new_user())))["aud"] == "authenticated"


def test_token_without_a_secret_says_why(app_factory, provider):
    app = app_factory(COUNTS_JWT_SECRET=None, COUNTS_JWKS_URL=provider.url)
    result = app.test_cli_runner().invoke(args=["token", "--service", "billing"])
    assert result.exit_code == 1
    assert "COUNTS_JWT_SECRET is not set" in result.output


@pytest.mark.parametrize("user", ["alice", "1234", ""])
def test_token_for_a_non_uuid_user_is_a_usage_error(runner, user):
    result = runner.invoke(args=["token", user])
    assert result.exit_code == 2
    assert "is not a UUID" in result.output
    assert "eyJ" not in result.output  # no token (a JWT starts with the base64 of '{"') was printed


def test_token_ttl_is_honoured(runner):
    claims = decode(invoke_ok(runner, "token", "--ttl", "120", str(new_user())))
    assert claims["exp"] - claims["iat"] == 120


def test_token_default_ttl_is_an_hour(runner):
    claims = decode(invoke_ok(runner, "token", str(new_user())))
    assert claims["exp"] - claims["iat"] == 3600


@pytest.mark.parametrize("ttl", ["0", "-5", "soon"])
def test_token_refuses_a_bad_ttl(runner, ttl):
    assert runner.invoke(args=["token", "--ttl", ttl, str(new_user())]).exit_code == 2


# --- bump and drain-outbox ---------------------------------------------------------------------

def test_bump_changes_that_users_marker_only(runner, redis_client):
    user, bystander = new_user(), new_user()
    before = read_marker(redis_client, user)
    bystander_before = read_marker(redis_client, bystander)
    assert invoke_ok(runner, "bump", str(user)) == "bumped 1"
    assert read_marker(redis_client, user) != before
    assert read_marker(redis_client, bystander) == bystander_before


def test_bump_refuses_a_non_uuid(runner):
    result = runner.invoke(args=["bump", "not-a-uuid"])
    assert result.exit_code == 2
    assert "is not a UUID" in result.output


def test_drain_outbox_bumps_queued_rows_and_empties_the_outbox(runner, resources, redis_client, pg):
    users = [new_user(), new_user()]
    before = {u: read_marker(redis_client, u) for u in users}
    outbox.enqueue(resources.db, users)
    assert invoke_ok(runner, "drain-outbox") == "bumped 2"
    assert all(read_marker(redis_client, u) != before[u] for u in users)
    with pg.cursor() as cur:
        cur.execute("SELECT count(*) FROM marker_outbox")
        assert cur.fetchone()[0] == 0
    assert invoke_ok(runner, "drain-outbox") == "bumped 0"
