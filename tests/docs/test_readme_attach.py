"""The README's "Attach to your own database", pasted into bash: the setup on an empty database,
then the service under gunicorn, then the demo's SQL writes and polls; and after them the push
section's attached-mode session, with a push worker and the local push service."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from counts.identity import mint_token
from dev.services import _pg_bin
from tests.support import ROOT
from tests.support.docs import README, code_blocks
from tests.support.environment import ADMIN_URL, SECRET
from tests.support.postgres import throwaway_database
from tests.support.push import VAPID_SUBJECT
from tests.support.pushfakes.browser import pki_in
from tests.support.services import Gunicorn, free_port, wait_until
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

FLASK = f"{Path(sys.executable).parent / 'flask'} --app {ROOT / 'app.py'}"
PSQL = shutil.which("psql") or str(_pg_bin() / "psql")
ATTACH = "Attach to your own database"


def bash(script: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """Run `script` as a pasted session would (stopping at the first failure)."""
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def empty_app_database(tmp_path):
    """An empty database, the example's files with role names of this test's own, and those
    roles dropped afterwards."""
    suffix = run_suffix()
    copies = tmp_path / "example"
    copies.mkdir()
    for name in FILES:
        (copies / name).write_text(example_sql(name, suffix))
    try:
        with throwaway_database("counts_test_attached_readme") as url:
            yield Chat(url, suffix), copies
    finally:
        drop_roles(ADMIN_URL, suffix)


def set_up_as_pasted(chat: Chat, copies: Path, tmp_path: Path) -> str:
    """Run the walkthrough's setup (all but its `make run`); the demo, made runnable here."""
    setup, demo = code_blocks(README, ATTACH)
    setup, run = setup.rstrip().rsplit("\n", 1)
    assert run.startswith("make run")
    setup = (setup.replace("postgresql://postgres@127.0.0.1:5432/chat", chat.url)
             .replace(".venv/bin/flask --app app", FLASK)
             .replace("examples/supabase-chat/", f"{copies}/")
             .replace("psql ", f"{PSQL} "))
    done = bash(setup, {**os.environ, "COUNTS_JWT_SECRET": SECRET}, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "note: COUNTS_UNREAD_FUNCTION public.counts_unread: it does not exist" in done.stderr
    return demo.replace("set local role authenticated", f"set local role {chat.roles['authenticated']}")


def pasted(script: str, server: Gunicorn) -> str:
    """A README block made to run here: this server, this venv's flask, the machine's psql."""
    return (script.replace("http://127.0.0.1:8000", server.url)
            .replace(".venv/bin/flask --app app", FLASK)
            .replace("psql ", f"{PSQL} "))


def test_readme_attach_walkthrough_works_as_pasted(empty_app_database, tmp_path):
    chat, copies = empty_app_database
    demo = set_up_as_pasted(chat, copies, tmp_path)
    env = {**os.environ, "COUNTS_JWT_SECRET": SECRET}
    server = Gunicorn(attached_env(chat)).start()  # what `make run` starts, on a port of its own
    try:
        done = bash(pasted(demo, server), {**env, "DATABASE_URL": chat.url}, tmp_path)
        assert done.returncode == 0, done.stderr
        statuses = re.findall(r"^HTTP/1.1 (\d{3})", done.stdout, re.M)
        totals = re.findall(r'"total": (\d+)', done.stdout)
        assert (statuses[0], totals[0]) == ("200", "0")
        if statuses[-1] == "304":  # pasted by a person the relay is done first; by a script, maybe not
            bob = re.search(r'"user_id": "([0-9a-f-]{36})"', done.stdout).group(1)
            headers = {"Authorization": f"Bearer {mint_token(SECRET, bob)}",
                       "If-None-Match": (tmp_path / "bob.etag").read_text().strip()}
            url = f"{server.url}/v1/users/{bob}/unread-counts"
            wait_until(lambda: requests.get(url, headers=headers, timeout=5).status_code == 200,
                       timeout=RELAY_BOUND, what="the demo's message to reach Bob")
            totals.append(str(requests.get(url, headers=headers, timeout=5).json()["total"]))
        assert totals[-1] == "1"
    finally:
        server.stop()


def test_the_walkthrough_runs_every_example_file_in_order():
    setup = code_blocks(README, ATTACH)[0]
    files = re.search(r"for file in ([\w -]+); do", setup).group(1).split()
    assert tuple(f"{name}.sql" for name in files) == FILES
    assert {path.name for path in EXAMPLE.glob("*.sql")} == set(FILES)


def test_readme_attached_push_session_shows_the_alert_then_the_badge(empty_app_database, workers,
                                                                      tmp_path):
    from counts.push import vapid

    chat, copies = empty_app_database
    demo = set_up_as_pasted(chat, copies, tmp_path)
    session = code_blocks(README, "Push for apps in the background")[2]
    port = free_port()
    pki = pki_in(tmp_path / "fake")  # what `browser env` makes
    env = attached_env(chat, COUNTS_VAPID_PRIVATE_KEY=vapid.generate(), COUNTS_VAPID_SUBJECT=VAPID_SUBJECT,
                       COUNTS_WEBPUSH_ALLOWED_HOSTS=f"127.0.0.1:{port}", COUNTS_PUSH_CA_FILE=pki.ca_file)
    server = Gunicorn(env).start()  # what `make run` starts: the service, and a push worker
    try:
        workers(env)
        browser = (f"{sys.executable} -m tests.support.pushfakes.browser run --url {server.url} --port {port}"
                   f" --dir {tmp_path / 'fake'}")
        # A person pasting line by line reads the alert before marking it read; a script waits.
        session = session.replace("# the browser prints", "sleep 2  # the browser prints", 1)
        script = pasted(demo + session, server).replace(
            ".venv/bin/python -m tests.support.pushfakes.browser run", browser)
        done = bash(script, {**os.environ, **env, "PYTHONPATH": str(ROOT)}, tmp_path)
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr
    assert "registered: 201" in done.stdout
    pushes = re.findall(r'"urgency": "(\w+)".*"total": (\d), .*"alert": (true|false)', done.stdout)
    assert pushes == [("normal", "2", "true"), ("low", "0", "false")], done.stdout
