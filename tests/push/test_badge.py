"""The badge is one number everywhere (docs/DESIGN.md invariant 14): a poll, a stream, a batch
answer and a push carry the same badge, under the same policy, for a user whose badge is not
their total (a conversation muted to mentions, with a mention in it)."""

import json

import pytest

from tests.support.api import Api, new_user
from tests.support.postgres import true_counts
from tests.support.push import queue_empty, subscribe
from tests.support.services import wait_until


def first_stream_event(api, user) -> dict:
    """The counts of the first event of the user's SSE stream (sent at once on connect)."""
    response = api.client.get(f"/v1/users/{user}/unread-counts/stream",
                              headers=api.tokens.user(user), buffered=False)
    try:
        text = ""
        for chunk in response.response:
            text += chunk.decode() if isinstance(chunk, bytes) else chunk
            if "\n\n" in text and "data:" in text:
                break
        data = next(line for line in text.splitlines() if line.startswith("data:"))
        return json.loads(data.removeprefix("data:").strip())
    finally:
        response.close()


@pytest.mark.parametrize("policy,badge", [("messages", 3), ("conversations", 2), ("mentions", 1)])
def test_poll_stream_batch_and_push_carry_one_badge(app_factory, push_config, tokens, push_service,
                                                    dispatchers, pg, policy, badge):
    config = {**push_config, "COUNTS_BADGE_POLICY": policy}
    api = Api(app_factory(**config).test_client(), tokens)
    alice, bob = new_user(), new_user()
    loud, quiet = api.conversation(alice, bob), api.conversation(alice, bob)
    assert api.notify(quiet, bob, "mentions").status_code == 200
    browser = subscribe(api, push_service, bob)
    for _ in range(2):
        assert api.send(loud, alice).status_code == 201
    assert api.send(quiet, alice).status_code == 201
    assert api.mention(quiet, alice, [bob]).status_code == 201
    dispatchers(COUNTS_BADGE_POLICY=policy)
    wait_until(lambda: queue_empty(pg) and browser.messages(), what="bob's pushes")

    polled = api.counts(bob).get_json()
    assert (polled["total"], polled["badge"]) == (2, badge)
    assert polled["badge"] == true_counts(pg, bob, policy)["badge"]
    batch = api.client.post("/v1/unread-counts/batch", headers=tokens.service(),
                            json={"users": [{"user_id": str(bob), "etag": None}]}).get_json()
    assert batch["users"][0]["counts"]["badge"] == badge
    assert first_stream_event(api, bob)["badge"] == badge
    assert browser.messages()[-1]["badge"] == badge
    assert browser.messages()[-1]["total"] == 2
