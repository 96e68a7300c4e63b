"""examples/supabase-chat/triggers.sql at the SQL level: whom each statement bumps, one outbox row
per statement, and joins serialized with messages so that a joiner is never left stale.

No relay runs in this module: the outbox rows stay for the tests to read.
"""

import threading

from tests.attached.conftest import RELAY_BOUND
from tests.conftest import new_user
from tests.services import wait_until


def bumps_of(chat, users) -> list[set[str]]:
    """The outbox rows naming any of `users`, oldest first, as sets of text ids."""
    with chat.admin() as conn, conn.cursor() as cur:
        cur.execute("SELECT user_ids::text[] FROM counts.marker_outbox WHERE user_ids && %s::uuid[]"
                    " ORDER BY id", ([str(u) for u in users],))
        return [set(row[0]) for row in cur.fetchall()]


def waiting_for_a_lock(chat) -> bool:
    """Whether some transaction waits for an advisory lock (the conversation lock)."""
    with chat.admin() as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        return cur.fetchone()[0] > 0


def test_one_statement_is_one_bump_of_exactly_the_users_it_concerns(chat, writer):
    alice, bob, carol, dave = (new_user() for _ in range(4))
    conversation = writer.create_conversation(alice, [bob, carol])
    everyone = [alice, bob, carol, dave]
    assert bumps_of(chat, everyone) == [{str(alice), str(bob), str(carol)}]  # joined together
    with writer.transaction(alice) as cur:  # three messages in one statement
        cur.execute("INSERT INTO messages (conversation_id, body) SELECT %s, 'm' || n"
                    " FROM generate_series(1, 3) n", (conversation,))
    assert bumps_of(chat, everyone)[1:] == [{str(bob), str(carol)}]  # not the sender
    writer.read(conversation, bob)
    writer.leave(conversation, carol)
    writer.add(conversation, alice, dave)
    assert bumps_of(chat, everyone)[2:] == [{str(bob)}, {str(carol)}, {str(dave)}]
    writer.delete_conversation(conversation, alice)
    assert bumps_of(chat, everyone)[5:] == [{str(alice), str(bob), str(dave)}]


def test_a_message_waits_for_a_join_in_flight_and_bumps_the_joiner(chat):
    """Without the lock, the message would read the participants before the join commits, and
    the joiner, bumped by the join before the message was visible, would never see it."""
    alice, bob, carol = new_user(), new_user(), new_user()
    joining, sending = chat.writer(), chat.writer()
    try:
        conversation = joining.create_conversation(alice, [bob])
        join = joining.transaction(alice)
        cur = join.__enter__()
        cur.execute("INSERT INTO participants (conversation_id, user_id) VALUES (%s, %s)",
                    (conversation, str(carol)))  # the join's trigger holds the lock, uncommitted
        sent = threading.Thread(target=sending.send, args=(conversation, bob, "hi carol"))
        sent.start()
        wait_until(lambda: waiting_for_a_lock(chat) or not sent.is_alive(), timeout=RELAY_BOUND,
                   what="the message to wait for the join")
        join.__exit__(None, None, None)  # the join commits; the message goes on
        sent.join(timeout=RELAY_BOUND)
        assert not sent.is_alive()
    finally:
        joining.close()
        sending.close()
    assert chat.unread_total(carol) == 1  # the message counts for the joiner...
    assert bumps_of(chat, [carol]) == [{str(carol)}, {str(alice), str(carol)}]  # ...and bumped her
