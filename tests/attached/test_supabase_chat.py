"""examples/supabase-chat end to end: plain SQL writes by a low-privilege role under row-level
security reach pollers of the real service (gunicorn, gthread and gevent) through the relay.

Each kind of write (message, read receipt, join, leave, deleted message, deleted conversation)
turns the affected users' next poll into a 200 with the function's counts within the relay's
bound, while the users it does not affect keep their 304. No drainer runs: only the relay can
move a marker here.
"""

import psycopg2
import pytest

from tests.support.api import Tokens, new_user
from tests.support.services import LiveClient, wait_until
from tests.support.supabase_chat import RELAY_BOUND


class Poller:
    """A user's app polling the live service, keeping its ETag and counts."""

    def __init__(self, server, user):
        self.client = LiveClient(server.url)
        self.user = user
        self.headers = Tokens().user(user)
        self.etag = None
        self.counts = None

    def poll(self) -> int:
        """One conditional poll; on a 200 keep the new ETag and counts. The status."""
        headers = dict(self.headers)
        if self.etag is not None:
            headers["If-None-Match"] = self.etag
        response = self.client.get(f"/v1/users/{self.user}/unread-counts", headers=headers)
        assert response.status_code in (200, 304), response.text
        if response.status_code == 200:
            self.etag, self.counts = response.headers["ETag"], response.json()
        return response.status_code

    def sees_change(self) -> dict:
        """Wait (within the relay's bound) for a 200; the counts it brought."""
        wait_until(lambda: self.poll() == 200, timeout=RELAY_BOUND,
                   what=f"a 200 for {self.user} after the write")
        return self.counts

    def unchanged(self) -> None:
        """A poll now is a 304: nothing changed for this user."""
        assert self.poll() == 304, f"{self.user} was bumped by a write that did not concern them"


@pytest.fixture
def pollers(attached_server, chat):
    """Make a started poller per user, once the relay has bumped what their setup wrote."""

    def make(*users):
        wait_until(lambda: not chat.queued_for(users), timeout=RELAY_BOUND,
                   what="the relay to take the setup's bumps")
        made = [Poller(attached_server, user) for user in users]
        for poller in made:
            assert poller.poll() == 200
            assert poller.poll() == 304  # nothing changes: Redis alone answers
        return made

    return make


def test_each_kind_of_sql_write_reaches_exactly_its_users(chat, writer, pollers):
    alice, bob, carol = new_user(), new_user(), new_user()
    conversation = writer.create_conversation(alice, [bob])
    a, b, c = pollers(alice, bob, carol)

    message = writer.send(conversation, alice, "lunch?")  # new message: the others
    assert b.sees_change()["total"] == 1
    assert [(c["conversation_id"], c["unread"]) for c in b.counts["conversations"]] == [
        (conversation, 1)]
    a.unchanged()  # the sender's counts did not change
    c.unchanged()

    writer.read(conversation, bob)  # read receipt: that user
    assert b.sees_change()["total"] == 0
    a.unchanged()

    writer.send(conversation, alice, "at noon")
    assert b.sees_change()["total"] == 1
    writer.add(conversation, alice, carol)  # join: the joiner
    assert c.sees_change()["total"] == 0  # history before joining is not news
    writer.send(conversation, bob, "ok")
    assert c.sees_change()["total"] == 1
    assert a.sees_change()["total"] == 1

    writer.leave(conversation, carol)  # leave: that user
    assert c.sees_change()["total"] == 0

    writer.delete_message(message, alice)  # deleted message: the others
    assert b.sees_change()["total"] == 1  # "at noon" is left unread

    writer.delete_conversation(conversation, alice)  # deleted conversation: every participant
    assert b.sees_change()["total"] == 0
    assert a.sees_change()["total"] == 0
    for poller in (a, b, c):
        assert poller.counts["total"] == chat.unread_total(poller.user)


def test_rolled_back_write_bumps_nobody(writer, pollers):
    alice, bob, dave, erin = new_user(), new_user(), new_user(), new_user()
    conversation = writer.create_conversation(alice, [bob])
    fence = writer.create_conversation(dave, [erin])
    b, e = pollers(bob, erin)
    with pytest.raises(psycopg2.errors.RaiseException), writer.transaction(alice) as cur:
        cur.execute("INSERT INTO messages (conversation_id, body) VALUES (%s, 'oops')", (conversation,))
        cur.execute("DO $$ BEGIN RAISE EXCEPTION 'the app changed its mind'; END $$")
    writer.send(fence, dave)  # committed after the rollback: the relay has seen both once...
    assert e.sees_change()["total"] == 1
    b.unchanged()  # ...and the rolled-back message bumped nobody


def test_row_level_security_holds_for_the_writers(writer, chat):
    alice, bob, mallory = new_user(), new_user(), new_user()
    conversation = writer.create_conversation(alice, [bob])
    with pytest.raises(psycopg2.errors.InsufficientPrivilege), writer.transaction(mallory) as cur:
        cur.execute("INSERT INTO messages (conversation_id, body) VALUES (%s, 'hi')", (conversation,))
    with pytest.raises(psycopg2.errors.InsufficientPrivilege), writer.transaction(bob) as cur:
        cur.execute("INSERT INTO messages (conversation_id, sender_id, body) VALUES (%s, %s, 'as alice')",
                    (conversation, str(alice)))
    with writer.transaction(mallory) as cur:
        cur.execute("UPDATE participants SET last_read_at = now() WHERE conversation_id = %s",
                    (conversation,))
        assert cur.rowcount == 0  # RLS: not her rows
    with pytest.raises(psycopg2.errors.InsufficientPrivilege), writer.transaction(bob) as cur:
        cur.execute("SELECT counts.bump(ARRAY[%s]::uuid[])", (str(alice),))
    with pytest.raises(psycopg2.errors.InsufficientPrivilege), writer.transaction(bob) as cur:
        cur.execute("SELECT * FROM public.counts_unread(ARRAY[%s]::uuid[])", (str(alice),))
