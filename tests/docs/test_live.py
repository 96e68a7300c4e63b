"""docs/live.md's session, pasted after the README's curl session, does what it says: the
long-poll and both streams (token, ticket) get Alice's message, and the session ends by itself."""

import re

from tests.docs.test_readme import curl_session
from tests.support.docs import DOCS, Checkout, code_blocks
from tests.support.environment import SECRET, gunicorn_env
from tests.support.services import Gunicorn


def test_live_session_long_polls_and_streams_get_the_change(database_url, pg, redis_client, tmp_path):
    # A heartbeat a second: a stream's curl, whose grep has what it waited for, ends at its next
    # write (the pipe is gone) rather than after the default's 15 s.
    with Gunicorn(gunicorn_env(database_url, COUNTS_STREAM_HEARTBEAT="1")) as server:
        session = curl_session() + code_blocks(DOCS / "live.md", "Try it")[0]
        done = Checkout(tmp_path / "counts").run(
            session, {**server.env, "URL": server.url, "COUNTS_JWT_SECRET": SECRET}, timeout=90)
    assert done.returncode == 0, done.stderr
    # The curl session's 200, 304, 200, then the long-poll's 200 once Alice wrote.
    assert re.findall(r"^HTTP/1.1 (\d{3})", done.stdout, re.M) == ["200", "304", "200", "200"]
    assert "Preference-Applied: wait=25" in done.stdout
    assert "Alice wrote: 201" in done.stdout
    # Each stream resumed from the ETag Bob held, so its one event is Alice's message.
    events = re.findall(r'^data: .*"total": (\d+)', done.stdout, re.M)
    assert events == ["1", "1"]
