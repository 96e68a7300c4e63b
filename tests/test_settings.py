"""counts.settings: the JWT secret rule, defaults, and every setting checked at start-up."""

import ast
import os

import pytest

from counts.app import create_app
from counts.settings import DEVELOPMENT_JWT_SECRET, Settings
from tests.support import ROOT

SECRET_ENV = {"COUNTS_JWT_SECRET": "a-real-secret-0123456789-0123456789"}


@pytest.fixture
def clean_environ(monkeypatch):
    """An os.environ without any COUNTS_* setting, for the functions that read it."""
    for name in [n for n in os.environ if n.startswith("COUNTS_")]:
        monkeypatch.delenv(name)
    return monkeypatch


@pytest.mark.parametrize("env", [{}, {"COUNTS_ENV": "production"}, {"COUNTS_ENV": "staging"},
                                 {"COUNTS_JWT_SECRET": ""}])
def test_missing_secret_outside_development_is_an_error(env):
    with pytest.raises(RuntimeError, match="COUNTS_JWT_SECRET"):
        load(env)


def load(env: dict) -> Settings:
    """The settings of exactly `env` (never this process's environment)."""
    return Settings.from_env(env)


def test_create_app_refuses_to_start_without_a_secret(clean_environ):
    with pytest.raises(RuntimeError, match="COUNTS_JWT_SECRET"):
        create_app()


def test_create_app_refuses_a_non_numeric_setting(clean_environ):
    clean_environ.setenv("COUNTS_JWT_SECRET", SECRET_ENV["COUNTS_JWT_SECRET"])
    clean_environ.setenv("COUNTS_POLL_INTERVAL", "soon")
    with pytest.raises(RuntimeError, match="COUNTS_POLL_INTERVAL"):
        create_app()


def test_a_jwks_url_alone_is_enough_outside_development():
    config = load({"COUNTS_JWKS_URL": "https://ref.supabase.co/auth/v1/.well-known/jwks.json"})
    assert config.identity.jwt_secret is None
    assert config.identity.jwks_url.endswith("/jwks.json")


def test_without_any_key_source_the_error_names_both():
    with pytest.raises(RuntimeError, match="Neither COUNTS_JWT_SECRET nor COUNTS_JWKS_URL"):
        load({"COUNTS_JWKS_URL": ""})


def test_identity_defaults():
    config = load(SECRET_ENV)
    assert (config.identity.jwks_url, config.identity.audience, config.identity.issuer) == (None, None, None)
    assert (config.identity.leeway, config.identity.jwks_refresh) == (30, 300)
    assert config.identity.user_role == "authenticated"


@pytest.mark.parametrize(("raw", "audience"), [
    ("authenticated", ("authenticated",)),
    (" counts, mobile ,", ("counts", "mobile")),
    ("", None),
    (" , ", None),
])
def test_audience_is_a_comma_separated_list(raw, audience):
    assert load({**SECRET_ENV, "COUNTS_JWT_AUDIENCE": raw}).identity.audience == audience


def test_an_empty_user_role_means_tokens_need_no_role():
    assert load({**SECRET_ENV, "COUNTS_JWT_USER_ROLE": ""}).identity.user_role is None


@pytest.mark.parametrize(("name", "value"), [
    ("COUNTS_JWKS_URL", "file:///etc/passwd"),
    ("COUNTS_JWKS_URL", "ref.supabase.co/auth/v1/.well-known/jwks.json"),
    ("COUNTS_JWKS_URL", "https:///jwks.json"),
    ("COUNTS_JWKS_REFRESH", "0"),
    ("COUNTS_JWKS_REFRESH", "-5"),
    ("COUNTS_JWKS_REFRESH", "nan"),
    ("COUNTS_JWKS_REFRESH", "5m"),
    ("COUNTS_JWT_LEEWAY", "-1"),
    ("COUNTS_JWT_LEEWAY", "inf"),
])
def test_bad_identity_settings_are_startup_errors(name, value):
    with pytest.raises(RuntimeError, match=name):
        load({**SECRET_ENV, name: value})


@pytest.mark.parametrize("url", [
    "http://ref.supabase.co/auth/v1/.well-known/jwks.json",
    "http://10.0.0.7/jwks.json",
    "http://127.0.0.1.nip.io/jwks.json",  # a name that resolves to loopback is still a name
])
def test_a_jwks_url_over_plain_http_elsewhere_is_refused(url):
    with pytest.raises(RuntimeError, match="COUNTS_JWKS_URL must be https"):
        load({**SECRET_ENV, "COUNTS_JWKS_URL": url})


@pytest.mark.parametrize("url", ["https://ref.supabase.co/auth/v1/.well-known/jwks.json",
                                 "http://127.0.0.1:9999/jwks.json", "http://localhost/jwks.json",
                                 "http://[::1]:9999/jwks.json"])
def test_a_jwks_url_is_https_or_loopback(url):
    assert load({**SECRET_ENV, "COUNTS_JWKS_URL": url}).identity.jwks_url == url


JWKS_ENV = {"COUNTS_JWKS_URL": "https://idp.example/jwks.json", "COUNTS_JWT_ISSUER": "https://idp.example/"}


def test_a_service_audience_is_off_by_default_and_read_as_a_list():
    assert load(SECRET_ENV).identity.service_audience is None
    config = load({**JWKS_ENV, "COUNTS_JWT_AUDIENCE": "counts",
                              "COUNTS_JWT_SERVICE_AUDIENCE": "counts-service"})
    assert config.identity.service_audience == ("counts-service",)


@pytest.mark.parametrize(("env", "why"), [
    ({**SECRET_ENV, "COUNTS_JWT_SERVICE_AUDIENCE": "counts-service"}, "needs COUNTS_JWKS_URL"),
    ({"COUNTS_JWKS_URL": JWKS_ENV["COUNTS_JWKS_URL"], "COUNTS_JWT_SERVICE_AUDIENCE": "x"},
     "COUNTS_JWT_ISSUER"),
    ({**JWKS_ENV, "COUNTS_JWT_SERVICE_AUDIENCE": "authenticated"}, "also a user audience"),
    ({**JWKS_ENV, "COUNTS_JWT_AUDIENCE": "a,b", "COUNTS_JWT_SERVICE_AUDIENCE": "b"},
     "also a user audience"),
])
def test_a_service_audience_without_its_checks_is_a_startup_error(env, why):
    with pytest.raises(RuntimeError, match=why):
        load(env)


def test_development_falls_back_to_the_dev_secret():
    config = load({"COUNTS_ENV": "development"})
    assert config.identity.jwt_secret == DEVELOPMENT_JWT_SECRET


def test_an_explicit_secret_wins_in_development():
    config = load({"COUNTS_ENV": "development", **SECRET_ENV})
    assert config.identity.jwt_secret == SECRET_ENV["COUNTS_JWT_SECRET"]


def test_secret_from_the_environment():
    config = load(SECRET_ENV)
    assert config.identity.jwt_secret == SECRET_ENV["COUNTS_JWT_SECRET"]
    assert config.server.env == "production"


def test_defaults():
    config = load(SECRET_ENV)
    assert config.http.poll_interval == 30
    assert config.redis.marker_ttl == 30 * 24 * 3600
    assert config.http.max_body_bytes == 1024 * 1024
    assert config.postgres.url.startswith("postgresql://")
    assert config.redis.topology.url.startswith("redis://")


def test_numbers_from_the_environment():
    config = load({**SECRET_ENV, "COUNTS_POLL_INTERVAL": "45", "COUNTS_MARKER_TTL": "600",
                              "COUNTS_REDIS_TIMEOUT": "0.5"})
    assert (config.http.poll_interval, config.redis.marker_ttl, config.redis.timeout) == (45, 600, 0.5)


def test_empty_numeric_setting_means_default():
    assert load({**SECRET_ENV, "COUNTS_POLL_INTERVAL": ""}).http.poll_interval == 30


@pytest.mark.parametrize(("name", "value"), [
    ("COUNTS_POLL_INTERVAL", "thirty"),
    ("COUNTS_POLL_INTERVAL", "1.5"),
    ("COUNTS_MARKER_TTL", "30d"),
    ("COUNTS_PG_TIMEOUT", "two"),
    ("COUNTS_MAX_BODY_BYTES", "1MiB"),
])
def test_non_numeric_setting_is_a_startup_error(name, value):
    with pytest.raises(RuntimeError, match=name):
        load({**SECRET_ENV, name: value})


def test_an_explicit_environment_ignores_the_process_one(clean_environ):
    clean_environ.setenv("COUNTS_POLL_INTERVAL", "45")
    assert Settings.from_env({**SECRET_ENV}).http.poll_interval == 30
    clean_environ.setenv("COUNTS_JWT_SECRET", "from-the-process")
    assert Settings.from_env().http.poll_interval == 45


def test_cors_origins_are_a_comma_list():
    config = load({**SECRET_ENV, "COUNTS_CORS_ORIGINS": " https://a.example, ,http://b:3000"})
    assert config.http.cors_origins == ("https://a.example", "http://b:3000")
    assert load(SECRET_ENV).http.cors_origins == ()


@pytest.mark.parametrize("name", ["COUNTS_MAX_WAIT", "COUNTS_STREAM_HEARTBEAT", "COUNTS_REDIS_POOL_SIZE"])
def test_live_settings_must_be_positive(name):
    with pytest.raises(RuntimeError, match=name):
        load({**SECRET_ENV, name: "0"})


def environment_reads(path) -> list[int]:
    """Lines of `path` that read the process environment (writes for child processes are not
    reads: `os.environ[k] = v`, and `os.environ.setdefault(k, v)` as a statement)."""
    tree = ast.parse(path.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    reads = []
    for node in ast.walk(tree):
        named = (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                 and node.value.id == "os" and node.attr in ("environ", "getenv", "environb"))
        if not named:
            continue
        parent = parents[node]
        if isinstance(parent, ast.Subscript) and isinstance(parent.ctx, ast.Store):
            continue
        if (isinstance(parent, ast.Attribute) and parent.attr == "setdefault"
                and isinstance(parents[parents[parent]], ast.Expr)):
            continue
        reads.append(node.lineno)
    return reads


def test_only_counts_settings_reads_the_environment():
    files = [*(ROOT / "counts").rglob("*.py"), ROOT / "gunicorn.conf.py", ROOT / "app.py", ROOT / "wsgi.py"]
    readers = {str(path.relative_to(ROOT)): lines for path in files
               if (lines := environment_reads(path)) and "counts/settings" not in str(path)}
    assert readers == {}
    assert environment_reads(ROOT / "counts" / "settings" / "__init__.py")  # the reader itself is seen
