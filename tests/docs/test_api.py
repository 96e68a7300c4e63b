"""docs/api.md's session, pasted after the README's curl session, does what it says: a muted
conversation stays listed out of the total, and the mention makes the badge."""

import json
import re

from tests.docs.test_readme import curl_session
from tests.support.docs import DOCS, Checkout, code_blocks
from tests.support.environment import SECRET


def test_api_session_shows_a_muted_conversation_a_mention_and_the_badge(live_server, tmp_path):
    session = curl_session() + code_blocks(DOCS / "api.md", "Try it")[0]
    done = Checkout(tmp_path / "counts").run(
        session, {**live_server.env, "URL": live_server.url, "COUNTS_JWT_SECRET": SECRET},
        timeout=60)
    assert done.returncode == 0, done.stderr
    assert re.findall(r"^HTTP/1.1 (\d{3})", done.stdout, re.M) == ["200", "304", "200", "200"]
    assert '"notify": "mentions"' in done.stdout
    last = json.loads(done.stdout.strip().splitlines()[-1])
    assert (last["total"], last["unread_conversations"], last["mentions"], last["badge"]) == (
        0, 0, 1, 1)
    assert [(c["unread"], c["mentions"], c["notify"]) for c in last["conversations"]] == [
        (2, 1, "mentions")]
