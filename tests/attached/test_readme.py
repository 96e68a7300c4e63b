"""The README's "Attach to your own database", pasted into bash: the setup on an empty database,
then the service under gunicorn, then the demo's SQL writes and polls."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from counts.auth import mint_token
from counts.devservices import _pg_bin
from tests.attached.chat import EXAMPLE, FILES, Chat, drop_roles, example_sql, run_suffix
from tests.attached.conftest import RELAY_BOUND, attached_env
from tests.conftest import ADMIN_URL, SECRET, throwaway_database
from tests.services import ROOT, Gunicorn, wait_until

FLASK = f"{Path(sys.executable).parent / 'flask'} --app {ROOT / 'app.py'}"
PSQL = shutil.which("psql") or str(_pg_bin() / "psql")


def readme_blocks() -> list[str]:
    """The ```sh blocks of the README's attach section, in order."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Attach to your own database", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


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


def test_readme_attach_walkthrough_works_as_pasted(empty_app_database, tmp_path):
    chat, copies = empty_app_database
    setup, demo = readme_blocks()
    setup, run = setup.rstrip().rsplit("\n", 1)
    assert run.startswith("make run")
    setup = (setup.replace("postgresql://postgres@127.0.0.1:5432/chat", chat.url)
             .replace(".venv/bin/flask --app app", FLASK)
             .replace("examples/supabase-chat/", f"{copies}/")
             .replace("psql ", f"{PSQL} "))
    env = {**os.environ, "COUNTS_JWT_SECRET": SECRET}
    done = bash(setup, env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "note: COUNTS_UNREAD_FUNCTION public.counts_unread: it does not exist" in done.stderr

    server = Gunicorn(attached_env(chat)).start()  # what `make run` starts, on a port of its own
    try:
        demo = (demo.replace("http://127.0.0.1:8000", server.url)
                .replace(".venv/bin/flask --app app", FLASK)
                .replace("psql ", f"{PSQL} ")
                .replace("set local role authenticated", f"set local role {chat.roles['authenticated']}"))
        done = bash(demo, {**env, "DATABASE_URL": chat.url}, tmp_path)
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
    setup = readme_blocks()[0]
    files = re.search(r"for file in ([\w -]+); do", setup).group(1).split()
    assert tuple(f"{name}.sql" for name in files) == FILES
    assert {path.name for path in EXAMPLE.glob("*.sql")} == set(FILES)
