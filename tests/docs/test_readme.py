"""The README's curl and live sessions, pasted into bash against the live service, do what they
say; and its configuration table lists every identity setting."""

import re
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT
from tests.support.docs import README, code_blocks, section
from tests.support.environment import SECRET

LIVE = "Live counts (apps in the foreground)"


def test_readme_curl_session_gives_200_then_304_then_200(live_server, tmp_path):
    script = code_blocks(README, "Try it with curl")[0]
    assert "URL=http://127.0.0.1:8000" in script
    flask = Path(sys.executable).parent / "flask"
    script = (script.replace("URL=http://127.0.0.1:8000", f"URL={live_server.url}")
              .replace(".venv/bin/flask --app app", f"{flask} --app {ROOT / 'app.py'}"))
    env = {**live_server.env, "COUNTS_JWT_SECRET": SECRET}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    statuses = re.findall(r"^HTTP/1.1 (\d{3})", done.stdout, re.M)
    assert statuses == ["200", "304", "200"]
    totals = re.findall(r'"total": (\d+)', done.stdout)
    assert totals == ["1", "0"]
    assert (tmp_path / "bob.etag").read_text().strip().startswith('"')


def test_every_identity_setting_is_in_the_configuration_table():
    config = (ROOT / "counts" / "settings.py").read_text()
    settings = set(re.findall(r'"(COUNTS_(?:JWT|JWKS)_\w+)"', config))
    assert len(settings) >= 7
    table = "\n".join(section(README, "Configuration (environment)"))
    for setting in settings:
        assert f"| `{setting}` |" in table, setting


def test_readme_live_session_long_polls_and_streams_get_the_change(live_server, tmp_path):
    """The long-poll answers 200 when Alice writes; both streams (token, ticket) send it."""
    flask = Path(sys.executable).parent / "flask"
    # The live section's block uses the curl session's variables.
    curl, live = code_blocks(README, "Try it with curl")[0], code_blocks(README, LIVE)[0]
    script = ((curl + live)
              .replace("URL=http://127.0.0.1:8000", f"URL={live_server.url}")
              .replace(".venv/bin/flask --app app", f"{flask} --app {ROOT / 'app.py'}"))
    env = {**live_server.env, "COUNTS_JWT_SECRET": SECRET}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr
    # The curl session's 200, 304, 200, then the long-poll's 200 once Alice wrote.
    assert re.findall(r"^HTTP/1.1 (\d{3})", done.stdout, re.M) == ["200", "304", "200", "200"]
    assert "Preference-Applied: wait=25" in done.stdout
    events = re.findall(r'^data: .*"total": (\d+)', done.stdout, re.M)
    assert events.count("1") == 2  # Alice's new message, on both streams
    assert len(events) == 4  # each stream: the counts at once, then the change
