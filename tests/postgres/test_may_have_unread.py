"""conversation_members.may_have_unread (DESIGN.md invariant 17) on real Postgres, own mode: every
write keeps it (never false while the member has an unread message, false where the write knows
nothing is left), concurrent writes keep it, and the counts query that reads only flagged rows
answers what the old query that probed every membership answers."""

import random
import threading
import uuid

import psycopg2
import pytest

from counts.postgres.queries import reads
from counts.sources import own

# The counts statement before the flag (issue 20): every membership of the users probed. Kept
# here as the reference the new UNREAD_COUNTS must agree with.
REFERENCE_COUNTS = f"""
SELECT * FROM (
    SELECT *, NULL::text AS badge_policy FROM ({reads.ENTRY}
        WHERE m.user_id = ANY(%(user_ids)s::uuid[])
          AND (c.last_seq > m.last_read_seq OR m.marked_unread)
        OFFSET 0
    ) counted
    WHERE unread > 0 OR marked_unread
    UNION ALL
    SELECT user_id::text, NULL, NULL, NULL, NULL, NULL, NULL, badge_policy FROM user_settings
    WHERE user_id = ANY(%(user_ids)s::uuid[]) AND badge_policy IS NOT NULL
) rows
ORDER BY 1, 2
"""

# The invariant, counted from messages rather than from the columns the writes keep: a member
# whose flag is false has no message after their read position that is not deleted.
UNFLAGGED_UNREAD = """
SELECT m.conversation_id::text, m.user_id::text FROM conversation_members m
WHERE NOT m.may_have_unread AND EXISTS (
    SELECT 1 FROM messages x WHERE x.conversation_id = m.conversation_id
      AND x.seq > m.last_read_seq AND x.deleted_at IS NULL)
"""

FLAG = """
SELECT may_have_unread FROM conversation_members WHERE conversation_id = %s AND user_id = %s
"""


@pytest.fixture
def write(database_url, pg):
    """Run one of own's writes in its own committed transaction; its result."""
    conn = psycopg2.connect(database_url)

    def run(function, *args):
        with conn, conn.cursor() as cur:
            return function(cur, *args)

    yield run
    conn.close()


def flag(pg, conversation_id, user_id) -> bool | None:
    with pg.cursor() as cur:
        cur.execute(FLAG, (str(conversation_id), str(user_id)))
        row = cur.fetchone()
    return None if row is None else row[0]


def unflagged_unread(pg) -> list[tuple[str, str]]:
    with pg.cursor() as cur:
        cur.execute(UNFLAGGED_UNREAD)
        return cur.fetchall()


def test_a_new_conversation_and_a_join_start_unflagged(write, pg):
    alice, bob, carol = (uuid.uuid4() for _ in range(3))
    room, _ = write(own.create_conversation, [alice, bob])
    assert (flag(pg, room, alice), flag(pg, room, bob)) == (False, False)
    write(own.send_message, room, alice, "hi")
    assert write(own.join, room, carol)[0] is True
    assert flag(pg, room, carol) is False
    assert flag(pg, room, bob) is True
    assert unflagged_unread(pg) == []


def test_a_message_flags_every_recipient_and_not_the_sender(write, pg):
    alice, bob, carol = (uuid.uuid4() for _ in range(3))
    room, _ = write(own.create_conversation, [alice, bob, carol])
    write(own.send_message, room, bob, "earlier")  # alice and carol flagged, bob not
    write(own.send_message, room, alice, "hi")
    assert [flag(pg, room, u) for u in (alice, bob, carol)] == [False, True, True]
    assert unflagged_unread(pg) == []


def test_reading_to_the_end_clears_the_flag_and_part_way_keeps_it(write, pg):
    alice, bob = uuid.uuid4(), uuid.uuid4()
    room, _ = write(own.create_conversation, [alice, bob])
    for _ in range(3):
        write(own.send_message, room, alice, "m")
    write(own.mark_read, room, bob, 2)
    assert flag(pg, room, bob) is True
    write(own.mark_read, room, bob, 3)
    assert flag(pg, room, bob) is False
    write(own.mark_read, room, bob, 1)  # never backwards: still caught up
    assert flag(pg, room, bob) is False
    write(own.send_message, room, alice, "m")
    write(own.mark_read, room, bob, None)
    assert flag(pg, room, bob) is False
    assert unflagged_unread(pg) == []


def test_mark_unread_from_a_message_flags_and_the_mark_alone_is_counted(write, pg):
    alice, bob = uuid.uuid4(), uuid.uuid4()
    room, _ = write(own.create_conversation, [alice, bob])
    write(own.send_message, room, alice, "m")
    write(own.send_message, room, alice, "m")
    write(own.mark_read, room, bob, None)
    write(own.mark_unread, room, bob, 2)
    assert flag(pg, room, bob) is True
    write(own.mark_read, room, bob, None)
    write(own.mark_unread, room, bob, None)  # the flag of the UI, no message unread
    assert flag(pg, room, bob) is False
    with pg.cursor() as cur:
        counts = reads.unread_counts(cur, [bob])[bob]
    assert [e["marked_unread"] for e in counts["conversations"]] == [True]
    assert unflagged_unread(pg) == []


def test_a_thread_reply_flags_the_thread_members_only(write, pg):
    alice, bob = uuid.uuid4(), uuid.uuid4()
    room, _ = write(own.create_conversation, [alice, bob])
    write(own.send_message, room, alice, "root")
    write(own.mark_read, room, bob, None)
    thread, _ = write(own.create_conversation, [alice, bob], room, 1)
    write(own.send_message, thread, alice, "reply")
    assert (flag(pg, thread, bob), flag(pg, room, bob)) == (True, False)
    assert unflagged_unread(pg) == []


def test_deleting_and_leaving_never_leave_an_unflagged_unread(write, pg):
    alice, bob = uuid.uuid4(), uuid.uuid4()
    room, _ = write(own.create_conversation, [alice, bob])
    sent = [write(own.send_message, room, alice, "m")[0] for _ in range(2)]
    write(own.delete_message, room, uuid.UUID(sent[1]["message_id"]))
    assert flag(pg, room, bob) is True  # a false positive at most: one probe, filtered out
    with pg.cursor() as cur:
        assert reads.unread_counts(cur, [bob])[bob]["total"] == 1
    write(own.leave, room, bob)
    assert flag(pg, room, bob) is None
    assert unflagged_unread(pg) == []


def test_a_writer_that_does_not_know_the_flag_still_flags(write, pg):
    """An older worker during a rolling deploy: its message and its pointer moved back are plain
    statements of the version before migration 0009, and the triggers flag all the same."""
    alice, bob, carol = (uuid.uuid4() for _ in range(3))
    room, _ = write(own.create_conversation, [alice, bob, carol])
    write(own.send_message, room, alice, "m")
    write(own.mark_read, room, bob, None)
    write(own.mark_read, room, carol, None)
    assert (flag(pg, room, bob), flag(pg, room, carol)) == (False, False)
    with pg.cursor() as cur:  # the old send_message's statements, without a flag
        cur.execute("UPDATE conversations SET last_seq = last_seq + 1 WHERE id = %s "
                    "RETURNING last_seq", (str(room),))
        seq = cur.fetchone()[0]
        cur.execute("INSERT INTO messages (conversation_id, seq, id, sender_id, body) "
                    "VALUES (%s, %s, %s, %s, 'old')", (str(room), seq, str(uuid.uuid4()), str(alice)))
    assert (flag(pg, room, bob), flag(pg, room, carol)) == (True, True)
    write(own.mark_read, room, bob, None)
    with pg.cursor() as cur:  # the old mark-unread-from: the pointer alone moves back
        cur.execute("UPDATE conversation_members SET last_read_seq = 0 "
                    "WHERE conversation_id = %s AND user_id = %s", (str(room), str(bob)))
    assert flag(pg, room, bob) is True
    assert unflagged_unread(pg) == []
    with pg.cursor() as cur:
        assert reads.unread_counts(cur, [bob])[bob]["total"] == 2


def test_concurrent_sends_reads_and_joins_keep_the_flag_and_the_counts(database_url, pg):
    users = [uuid.uuid4() for _ in range(6)]
    joiners = [uuid.uuid4() for _ in range(4)]
    setup = psycopg2.connect(database_url)
    with setup, setup.cursor() as cur:
        rooms = [own.create_conversation(cur, users)[0] for _ in range(3)]
    setup.close()
    start, done = threading.Barrier(5), threading.Event()
    failures: list[BaseException] = []
    checks: list[int] = []

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        conn = psycopg2.connect(database_url)
        try:
            start.wait(timeout=10)
            for _ in range(60):
                room = rng.choice(rooms)
                action = rng.random()
                with conn, conn.cursor() as cur:
                    if action < 0.45:
                        own.send_message(cur, room, rng.choice(users), "m")
                    elif action < 0.8:
                        own.mark_read(cur, room, rng.choice(users), rng.choice([None, 1, 5, 20]))
                    elif action < 0.9:
                        own.mark_unread(cur, room, rng.choice(users), rng.randint(1, 20))
                    else:
                        own.join(cur, room, rng.choice(joiners))
        except BaseException as error:  # reported in the test's thread
            failures.append(error)
        finally:
            conn.close()

    def checker() -> None:
        # Every committed state, not only the last, keeps the invariant.
        conn = psycopg2.connect(database_url)
        conn.autocommit = True
        try:
            start.wait(timeout=10)
            while not done.is_set():
                checks.append(len(unflagged_unread(conn)))
        except BaseException as error:
            failures.append(error)
        finally:
            conn.close()

    writers = [threading.Thread(target=writer, args=(seed,)) for seed in range(4)]
    watcher = threading.Thread(target=checker)
    for thread in [*writers, watcher]:
        thread.start()
    for thread in writers:
        thread.join(timeout=120)
        assert not thread.is_alive(), "a writer hung"
    done.set()
    watcher.join(timeout=30)
    assert failures == []
    assert checks and set(checks) == {0}
    assert unflagged_unread(pg) == []
    everyone = users + joiners
    with pg.cursor() as cur:
        found = reads.unread_counts(cur, everyone)
        expected = reads.counts_by_user(cur, REFERENCE_COUNTS, everyone)
        cur.execute("SELECT count(*) FROM messages")
        assert cur.fetchone()[0] > 50  # the run did write
    assert found == expected
    assert any(body["total"] > 0 for body in found.values())


def test_the_counts_query_reads_only_flagged_memberships(write, pg):
    alice, bob = uuid.uuid4(), uuid.uuid4()
    rooms = [write(own.create_conversation, [alice, bob])[0] for _ in range(30)]
    write(own.send_message, rooms[0], alice, "news")
    with pg.cursor() as cur:
        cur.execute("ANALYZE conversation_members")
        cur.execute("SET enable_seqscan = off")  # a tiny table: ask for the plan of a big one
        statement = cur.mogrify(reads.UNREAD_COUNTS, {"user_ids": [str(bob)]}).decode()
        cur.execute("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) " + statement)
        plan = "\n".join(row[0] for row in cur.fetchall())
        cur.execute("RESET enable_seqscan")
    assert "conversation_members_unread_by_user" in plan
    scan = next(line for line in plan.splitlines() if "conversation_members_unread_by_user" in line)
    assert "actual rows=1 " in scan, plan  # of bob's 30 memberships, the one with news
