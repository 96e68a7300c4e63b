"""examples/supabase-chat/triggers.sql at the SQL level: whom each statement bumps, one outbox row
per statement, and joins serialized with messages so that a joiner is never left stale; and whom
each statement queues a push for, alert or badge only, in its own transaction.

No relay or dispatcher runs in this module: the outbox rows and push jobs stay for the tests to read.
"""

import threading

from counts.sources.attached import AttachedSource
from tests.support.api import new_user
from tests.support.services import wait_until
from tests.support.supabase_chat import RELAY_BOUND


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


def test_each_write_queues_the_pushes_of_exactly_the_users_whose_counts_it_changed(chat, writer):
    """A message alerts its recipients; a read that cleared something, a leave, a deleted message
    that was unread and a deleted conversation push a badge-only update; nothing else does."""
    alice, bob, carol, dave = (new_user() for _ in range(4))
    for user in (alice, bob, carol):
        chat.add_device(user)  # dave has none: never a job
    conversation = writer.create_conversation(alice, [bob, carol, dave])
    everyone = [alice, bob, carol, dave]

    def jobs_since(seen: int) -> list[tuple]:
        return chat.push_jobs(everyone)[seen:]

    assert jobs_since(0) == []  # joined: nothing unread yet
    first = writer.send(conversation, alice, "one")
    assert sorted(jobs_since(0)) == sorted([(str(bob), True, conversation), (str(carol), True, conversation)])
    writer.read(conversation, bob)
    assert jobs_since(2) == [(str(bob), False, conversation)]
    writer.read(conversation, bob)  # the receipt moves, but nothing was unread: no push
    writer.delete_message(first, alice)  # read by bob, unread by carol
    assert jobs_since(3) == [(str(carol), False, conversation)]
    writer.leave(conversation, carol)
    assert jobs_since(4) == [(str(carol), False, conversation)]
    writer.send(conversation, bob, "two")
    assert jobs_since(5) == [(str(alice), True, conversation)]  # not carol (left), not bob (sent)
    writer.delete_conversation(conversation, alice)
    assert sorted(jobs_since(6)) == sorted([(str(alice), False, conversation),
                                            (str(bob), False, conversation)])


def test_one_statement_into_two_conversations_alerts_each_one_with_its_own(chat, writer):
    alice, bob, carol = new_user(), new_user(), new_user()
    chat.add_device(bob)
    chat.add_device(carol)
    with_bob = writer.create_conversation(alice, [bob])
    with_carol = writer.create_conversation(alice, [carol])
    with writer.transaction(alice) as cur:
        cur.execute("INSERT INTO messages (conversation_id, body) SELECT c, 'hi' FROM unnest(%s::uuid[]) c",
                    ([with_bob, with_carol],))
    assert sorted(chat.push_jobs([alice, bob, carol])) == sorted([
        (str(bob), True, with_bob), (str(carol), True, with_carol)])


def test_a_rolled_back_message_queues_no_push(chat, writer):
    alice, bob = new_user(), new_user()
    chat.add_device(bob)
    conversation = writer.create_conversation(alice, [bob])
    try:
        with writer.transaction(alice) as cur:
            cur.execute("INSERT INTO messages (conversation_id, body) VALUES (%s, 'oops')", (conversation,))
            assert chat.push_jobs([bob]) == []  # not visible before the commit...
            raise RuntimeError("the app's transaction fails after its insert")
    except RuntimeError:
        pass
    assert chat.push_jobs([bob]) == []  # ...and gone with the rollback
    writer.send(conversation, alice)
    assert chat.push_jobs([bob]) == [(str(bob), True, conversation)]


def test_a_read_waits_for_a_message_in_flight_and_pushes_the_badge_it_cleared(chat):
    """The message began before the read, so the read clears it; without the conversation lock
    the read would look for it before it commits, queue no badge push, and the message's own
    alert, sent before the read commits, would leave the badge at 1."""
    alice, bob = new_user(), new_user()
    chat.add_device(bob)
    sending, reading = chat.writer(), chat.writer()
    try:
        conversation = sending.create_conversation(alice, [bob])
        message = sending.transaction(alice)
        cur = message.__enter__()
        cur.execute("INSERT INTO messages (conversation_id, body) VALUES (%s, 'hi')", (conversation,))
        read = threading.Thread(target=reading.read, args=(conversation, bob))
        read.start()
        wait_until(lambda: waiting_for_a_lock(chat) or not read.is_alive(), timeout=RELAY_BOUND,
                   what="the read to wait for the message")
        message.__exit__(None, None, None)  # the message commits; the read goes on
        read.join(timeout=RELAY_BOUND)
        assert not read.is_alive()
    finally:
        sending.close()
        reading.close()
    assert chat.unread_total(bob) == 0
    assert chat.push_jobs([bob]) == [(str(bob), True, conversation), (str(bob), False, conversation)]


def test_levels_and_mentions_decide_alerts_and_a_settings_change_bumps_and_pushes(chat, writer):
    """The example's mentions and notify levels, through its function and its triggers: a muted
    participant is bumped by every message but alerted only when mentioned, and a change of
    level or mark bumps that participant and pushes their badge."""
    alice, bob, carol = new_user(), new_user(), new_user()
    chat.add_device(bob)
    chat.add_device(carol)
    conversation = writer.create_conversation(alice, [bob, carol])
    everyone = [alice, bob, carol]
    with writer.transaction(bob) as cur:
        cur.execute("UPDATE participants SET notify = 'mentions' WHERE conversation_id = %s"
                    " AND user_id = %s", (conversation, str(bob)))
    assert bumps_of(chat, everyone)[1:] == [{str(bob)}]
    assert chat.push_jobs(everyone) == [(str(bob), False, conversation)]
    writer.send(conversation, alice, "plain")
    assert bumps_of(chat, everyone)[2:] == [{str(bob), str(carol)}]
    assert chat.push_jobs(everyone)[1:] == [(str(carol), True, conversation)]
    with writer.transaction(alice) as cur:
        cur.execute("INSERT INTO messages (conversation_id, body, mentions) VALUES (%s, 'hey', %s::uuid[])",
                    (conversation, [str(bob)]))
    assert sorted(chat.push_jobs(everyone)[2:]) == sorted([(str(bob), True, conversation),
                                                           (str(carol), True, conversation)])
    source = AttachedSource(("public", "counts_unread"))
    with chat.admin() as conn, conn.cursor() as cur:
        assert source.problem(cur) is None
        counts = source.unread_counts(cur, [bob, carol])
    assert (counts[bob]["total"], counts[bob]["mentions"], counts[bob]["badge"]) == (0, 1, 1)
    assert counts[bob]["conversations"][0]["unread"] == 2
    assert (counts[carol]["total"], counts[carol]["mentions"], counts[carol]["badge"]) == (2, 0, 2)
    with writer.transaction(carol) as cur:
        cur.execute("UPDATE participants SET marked_unread = true WHERE conversation_id = %s"
                    " AND user_id = %s", (conversation, str(carol)))
    assert bumps_of(chat, everyone)[-1] == {str(carol)}
    assert chat.push_jobs(everyone)[-1] == (str(carol), False, conversation)


# An independent recount of the example's tables: each conversation of the user with unread
# messages from others after their receipt (or joining), or marked unread.
EXAMPLE_TRUTH = """
SELECT p.conversation_id::text, count(m.id),
       count(m.id) FILTER (WHERE m.mentions @> ARRAY[p.user_id] OR m.mentions_all),
       p.notify, p.marked_unread
FROM participants p
LEFT JOIN messages m ON m.conversation_id = p.conversation_id AND m.sender_id <> p.user_id
                    AND m.created_at > coalesce(p.last_read_at, p.joined_at)
WHERE p.user_id = %s
GROUP BY 1, 4, 5 HAVING count(m.id) > 0 OR p.marked_unread
"""


def test_concurrent_mentions_mutes_marks_reads_and_deletes_end_on_the_recount(chat):
    """The races of own mode's fault tests, written as the example's app writes: a burst with
    mentions, Bob changing his level, marking unread and reading, Alice deleting mentioned
    messages. counts' body ends equal to a recount of the tables, and every statement that
    touched Bob's counts left a bump for him."""
    alice, bob = new_user(), new_user()
    setup = chat.writer()
    try:
        conversation = setup.create_conversation(alice, [bob])
    finally:
        setup.close()
    sent: list[str] = []

    def burst():
        writer = chat.writer()
        try:
            for n in range(12):
                with writer.transaction(alice) as cur:
                    cur.execute("INSERT INTO messages (conversation_id, body, mentions)"
                                " VALUES (%s, 'm', %s::uuid[]) RETURNING id::text",
                                (conversation, [str(bob)] if n % 3 == 0 else []))
                    sent.append(cur.fetchone()[0])
                if n % 4 == 3:
                    writer.delete_message(sent[n - 3], alice)  # a mentioned one
        finally:
            writer.close()

    def bob_settles():
        writer = chat.writer()
        try:
            for level in ("none", "mentions", "all", "mentions") * 3:
                with writer.transaction(bob) as cur:
                    cur.execute("UPDATE participants SET notify = %s, marked_unread = NOT marked_unread"
                                " WHERE conversation_id = %s AND user_id = auth.uid()",
                                (level, conversation))
                writer.read(conversation, bob)
        finally:
            writer.close()

    threads = [threading.Thread(target=work) for work in (burst, bob_settles)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive()
    source = AttachedSource(("public", "counts_unread"))
    with chat.admin() as conn, conn.cursor() as cur:
        counts = source.unread_counts(cur, [bob])[bob]
        cur.execute(EXAMPLE_TRUTH, (str(bob),))
        truth = cur.fetchall()
    assert [(e["conversation_id"], e["unread"], e["mentions"], e["notify"], e["marked_unread"])
            for e in counts["conversations"]] == truth
    assert counts["mentions"] == sum(row[2] for row in truth if row[3] != "none")
    # The join, 12 messages, 3 deletes of messages Bob may not have read, 24 updates of his row.
    assert len(bumps_of(chat, [bob])) == 1 + 12 + 3 + 24
