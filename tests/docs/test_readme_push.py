"""The README's push session, pasted into bash after its curl session, does what it says."""

import re
import subprocess
import sys

from tests.support import ROOT
from tests.support.docs import README, code_blocks
from tests.support.environment import SECRET
from tests.support.push import worker_env
from tests.support.pushfakes.browser import pki_in
from tests.support.services import Gunicorn, free_port


def test_readme_push_session_shows_the_alert_then_the_badge(push_config, server_env, workers,
                                                             tmp_path):
    port = free_port()
    pki = pki_in(tmp_path / "fake")  # what `browser env` makes
    config = {**push_config, "COUNTS_WEBPUSH_ALLOWED_HOSTS": f"127.0.0.1:{port}",
              "COUNTS_PUSH_CA_FILE": pki.ca_file}
    env = {**server_env, **worker_env(config)}
    server = Gunicorn(env).start()
    try:
        workers(env)
        flask = f"{sys.executable} -m flask --app {ROOT / 'app.py'}"
        # The push section's second block (the first starts make run), after the curl session.
        curl = code_blocks(README, "Try it with curl")[0]
        push = code_blocks(README, "Push for apps in the background")[1]
        script = (curl + push).replace("URL=http://127.0.0.1:8000", f"URL={server.url}")
        script = (script.replace(".venv/bin/flask --app app", flask)
                  .replace(".venv/bin/python -m tests.support.pushfakes.browser run",
                           f"{sys.executable} -m tests.support.pushfakes.browser run --port {port} "
                           f"--dir {tmp_path / 'fake'}")
                  .replace("kill %1", "sleep 4; kill %1"))  # the badge waits for the window's end
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path,
                              env={**env, "COUNTS_JWT_SECRET": SECRET, "PYTHONPATH": str(ROOT)},
                              capture_output=True, text=True, timeout=90, check=False)
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr
    pushes = re.findall(r'"urgency": "(\w+)".*"total": (\d), .*"alert": (true|false)', done.stdout)
    assert pushes[-2:] == [("normal", "1", "true"), ("low", "0", "false")], done.stdout
    assert '"token_hint": "sha256:' in done.stdout
