"""docs/push.md's own-mode session, pasted as written: the first terminal's `eval` line sets what
`make run` needs, and after the README's curl session the second terminal's block registers a
browser, and shows the alert, then the badge. (The attached-mode session: test_attach.py.)"""

import re

from tests.docs.test_readme import curl_session
from tests.support.docs import DOCS, Checkout, code_blocks, without_make_run
from tests.support.environment import SECRET
from tests.support.push import worker_env
from tests.support.services import Gunicorn

PUSH = DOCS / "push.md"
TRY = "Try it on one machine"


def test_push_session_shows_the_alert_then_the_badge(push_config, server_env, workers, tmp_path):
    checkout = Checkout(tmp_path / "counts")
    first_terminal, second_terminal = code_blocks(PUSH, TRY)[:2]
    fake = checkout.exported(without_make_run(first_terminal), {})
    assert set(fake) == {"COUNTS_WEBPUSH_ALLOWED_HOSTS", "COUNTS_PUSH_CA_FILE"}
    env = {**server_env, **worker_env(push_config), **fake}
    with Gunicorn(env) as server:  # what `make run` starts: the service and a push dispatcher
        workers(env)
        done = checkout.run(curl_session() + second_terminal,
                            {**env, "URL": server.url, "COUNTS_JWT_SECRET": SECRET}, timeout=90)
    assert done.returncode == 0, done.stderr
    assert "registered: 201" in done.stdout
    pushes = re.findall(r'"urgency": "(\w+)".*"total": (\d), .*"alert": (true|false)', done.stdout)
    assert pushes == [("normal", "1", "true"), ("low", "0", "false")], done.stdout
    assert '"token_hint": "sha256:' in done.stdout
