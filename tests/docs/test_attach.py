"""docs/attach.md, pasted as written: the walkthrough on an empty database (its setup, then the
service `make run` would start, then the SQL writes and polls), push from SQL after it
(docs/push.md's attached-mode session), and provider tokens from the local identity provider.

The walkthrough names a database `chat` and Supabase's roles; a test cannot take those names on
a shared Postgres, so they, and the admin URL, are the only words changed: the database becomes
one of this run's own, the roles get this run's suffix (in the example's files too)."""

import os
import re
import signal
import subprocess
import sys

import pytest
import requests

from counts.identity import mint_token
from counts.push import vapid
from tests.docs.test_push import PUSH, TRY
from tests.support.docs import DOCS, Checkout, code_blocks, without_make_run
from tests.support.environment import ADMIN_URL, SECRET, gunicorn_env
from tests.support.postgres import administer, with_database
from tests.support.push import VAPID_SUBJECT
from tests.support.services import Gunicorn, wait_until
from tests.support.supabase_chat import (
    EXAMPLE,
    FILES,
    RELAY_BOUND,
    Chat,
    attached_env,
    drop_roles,
    example_sql,
    run_suffix,
)

ATTACH = DOCS / "attach.md"
WALKTHROUGH = "Walkthrough: a Supabase-shaped chat on a local Postgres"
LOCAL_PROVIDER = "Try provider tokens locally"
DOCUMENTED_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DOCUMENTED_URL = "postgresql://postgres@127.0.0.1:5432/chat"


class Walkthrough:
    """This run's names for the walkthrough's database and roles, and a checkout whose
    examples/supabase-chat/ holds the example's files with those roles."""

    def __init__(self, tmp_path):
        self.suffix = run_suffix()
        self.name = f"counts_test_chat_{self.suffix}"
        self.chat = Chat(with_database(ADMIN_URL, self.name), self.suffix)
        examples = tmp_path / "examples"
        (examples / EXAMPLE.name).mkdir(parents=True)
        for name in FILES:
            (examples / EXAMPLE.name / name).write_text(example_sql(name, self.suffix))
        self.checkout = Checkout(tmp_path / "counts", examples)

    def here(self, block: str) -> str:
        """The block with this run's database and role names."""
        return (block.replace(DOCUMENTED_URL, self.chat.url)
                .replace(DOCUMENTED_ADMIN_URL, ADMIN_URL)
                .replace("create database chat", f"create database {self.name}")
                .replace("set local role authenticated",
                         f"set local role {self.chat.roles['authenticated']}"))

    def set_up(self) -> None:
        """The first terminal's block up to its `make run`."""
        setup = code_blocks(ATTACH, WALKTHROUGH)[0]
        done = self.checkout.run(self.here(without_make_run(setup)), {"COUNTS_JWT_SECRET": SECRET})
        assert done.returncode == 0, done.stderr
        assert "note: COUNTS_UNREAD_FUNCTION public.counts_unread: it does not exist" in done.stderr

    def demo(self) -> str:
        """The second terminal's block."""
        return self.here(code_blocks(ATTACH, WALKTHROUGH)[1])

    def remove(self) -> None:
        administer(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
        drop_roles(ADMIN_URL, self.suffix)


@pytest.fixture
def walkthrough(tmp_path):
    walk = Walkthrough(tmp_path)
    try:
        yield walk
    finally:
        walk.remove()


def test_attach_walkthrough_works_as_pasted(walkthrough):
    walkthrough.set_up()
    with Gunicorn(attached_env(walkthrough.chat)) as server:  # what `make run` starts
        done = walkthrough.checkout.run(walkthrough.demo(), {"URL": server.url, "COUNTS_JWT_SECRET": SECRET})
        assert done.returncode == 0, done.stderr
        statuses = re.findall(r"^HTTP/1.1 (\d{3})", done.stdout, re.M)
        totals = re.findall(r'"total": (\d+)', done.stdout)
        assert (statuses[0], totals[0]) == ("200", "0")
        if statuses[-1] == "304":  # pasted by a person the relay is done first; by a script, maybe not
            bob = re.search(r'"user_id": "([0-9a-f-]{36})"', done.stdout).group(1)
            headers = {"Authorization": f"Bearer {mint_token(SECRET, bob)}",
                       "If-None-Match": (walkthrough.checkout.path / "bob.etag").read_text().strip()}
            url = f"{server.url}/v1/users/{bob}/unread-counts"
            wait_until(lambda: requests.get(url, headers=headers, timeout=5).status_code == 200,
                       timeout=RELAY_BOUND, what="the demo's message to reach Bob")
            totals.append(str(requests.get(url, headers=headers, timeout=5).json()["total"]))
        assert totals[-1] == "1"


def test_the_walkthrough_runs_every_example_file_in_order():
    setup = code_blocks(ATTACH, WALKTHROUGH)[0]
    files = re.search(r"for file in ([\w -]+); do", setup).group(1).split()
    assert tuple(f"{name}.sql" for name in files) == FILES
    assert {path.name for path in EXAMPLE.glob("*.sql")} == set(FILES)


def test_attached_push_session_shows_the_alert_then_the_badge(walkthrough, workers):
    walkthrough.set_up()
    fake = walkthrough.checkout.exported(without_make_run(code_blocks(PUSH, TRY)[0]), {})
    env = attached_env(walkthrough.chat, COUNTS_VAPID_PRIVATE_KEY=vapid.generate(),
                       COUNTS_VAPID_SUBJECT=VAPID_SUBJECT, **fake)
    with Gunicorn(env) as server:  # what `make run` starts: the service, and a push worker
        workers(env)
        session = walkthrough.demo() + code_blocks(PUSH, TRY)[2]
        done = walkthrough.checkout.run(session, {"URL": server.url, "COUNTS_JWT_SECRET": SECRET})
    assert done.returncode == 0, done.stderr
    assert "registered: 201" in done.stdout
    pushes = re.findall(r'"urgency": "(\w+)".*"total": (\d), .*"alert": (true|false)', done.stdout)
    assert pushes == [("normal", "2", "true"), ("low", "0", "false")], done.stdout


def test_local_provider_session_gets_counts_with_an_es256_token_and_401_for_another_audience(
        database_url, pg, redis_client, tmp_path):
    checkout = Checkout(tmp_path / "counts")
    first_terminal, second_terminal = code_blocks(ATTACH, LOCAL_PROVIDER)
    # The first terminal runs until its `make run`, the provider staying in the background.
    script = without_make_run(first_terminal) + "env -0 > exported\nwait"
    provider = subprocess.Popen(["bash", "-eu", "-c", script], cwd=checkout.path,
                                env=checkout.environment({}), start_new_session=True)
    try:
        exported = checkout.path / "exported"
        wait_until(lambda: exported.exists() and exported.read_text().endswith("\0"), timeout=20,
                   what="the provider's settings")
        settings = dict(item.split("=", 1) for item in exported.read_text().split("\0") if item)
        jwks_url, issuer = settings["COUNTS_JWKS_URL"], settings["COUNTS_JWT_ISSUER"]
        assert jwks_url.startswith("http://127.0.0.1:") and jwks_url.startswith(issuer)
        env = gunicorn_env(database_url, COUNTS_JWKS_URL=jwks_url, COUNTS_JWT_ISSUER=issuer)
        with Gunicorn(env) as server:
            done = checkout.run(second_terminal, {"URL": server.url})
    finally:
        os.killpg(provider.pid, signal.SIGTERM)  # the shell and `serve`, as closing the terminal
        provider.wait(timeout=10)
    wait_until(lambda: not (checkout.path / ".data" / "oidc" / "issuer").exists(), timeout=10,
               what="the provider to stop")
    assert done.returncode == 0, done.stderr
    ok, refused = done.stdout.strip().splitlines()
    assert '"total": 0' in ok
    assert '"status": 401' in refused and "audience" in refused
    token = subprocess.run([sys.executable, "-m", "dev.oidc", "token", "x"], cwd=checkout.path,
                           env=checkout.environment({}), capture_output=True, text=True, check=False)
    assert token.returncode != 0 and "No identity provider is running" in token.stderr
