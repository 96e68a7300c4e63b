"""docs/attach.md's "Counts by what is unread, not by memberships", pasted onto the example's
schema in a database of its own (it changes the example's tables and trigger): the flag its
triggers keep is never false while a participant has an unread message, and a function reading
only the flagged rows can use the partial index."""

import os
import re

import pytest

from tests.support.docs import DOCS
from tests.support.supabase_chat import example_database

HEADING = "### Counts by what is unread, not by memberships"
ROOM = "00000000-0000-4000-8000-000000000001"
ALICE, BOB = "00000000-0000-4000-8000-00000000000a", "00000000-0000-4000-8000-00000000000b"

# Participants with a message from someone else after their read receipt and the flag off.
UNFLAGGED_UNREAD = """
SELECT p.user_id::text FROM public.participants p
WHERE NOT p.may_have_unread AND EXISTS (
    SELECT 1 FROM public.messages m WHERE m.conversation_id = p.conversation_id
      AND m.sender_id <> p.user_id AND m.created_at > coalesce(p.last_read_at, p.joined_at))
"""


def recipe() -> tuple[str, str, str]:
    """(the schema part, the UPDATE for the message trigger, the read trigger) as documented."""
    text = (DOCS / "attach.md").read_text()
    section = text.split(HEADING, 1)[1].split("**How fresh.**", 1)[0]
    block = re.search(r"```sql\n(.*?)```", section, re.S).group(1)
    schema, rest = block.split("-- In counts_bump_new_messages", 1)
    update = re.search(r"(update public\.participants p set may_have_unread = true.*?;)", rest,
                       re.S).group(1)
    return schema, update, rest[rest.index("-- A read receipt"):]


@pytest.fixture(scope="module")
def flagged_chat():
    with example_database(f"counts_test_flag_recipe_{os.getpid()}") as chat:
        schema, update, read_trigger = recipe()
        with chat.admin() as conn, conn.cursor() as cur:
            cur.execute(schema)
            cur.execute(read_trigger)
            # The app adds the UPDATE to its message trigger, after the lock it takes.
            cur.execute("SELECT pg_get_functiondef('public.counts_bump_new_messages'::regproc)")
            lock = ("perform public.lock_conversations(array(select m.conversation_id "
                    "from new_messages m));")
            function = cur.fetchone()[0]
            assert lock in function
            cur.execute(function.replace(lock, f"{lock}\n{update}", 1))
        yield chat


def flags(cur) -> dict[str, bool]:
    cur.execute("SELECT user_id::text, may_have_unread FROM public.participants "
                "WHERE conversation_id = %s", (ROOM,))
    return dict(cur.fetchall())


def test_the_documented_triggers_keep_the_flag_and_the_index_finds_it(flagged_chat):
    with flagged_chat.admin() as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO public.conversations (id, created_by) VALUES (%s, %s)", (ROOM, ALICE))
        cur.execute("INSERT INTO public.participants (conversation_id, user_id) VALUES (%s, %s), "
                    "(%s, %s)", (ROOM, ALICE, ROOM, BOB))
        cur.execute("UPDATE public.participants SET last_read_at = clock_timestamp()")
        assert flags(cur) == {ALICE: False, BOB: False}
        cur.execute("INSERT INTO public.messages (conversation_id, sender_id, body) "
                    "VALUES (%s, %s, 'hi')", (ROOM, ALICE))
        assert flags(cur) == {ALICE: False, BOB: True}
        cur.execute(UNFLAGGED_UNREAD)
        assert cur.fetchall() == []
        cur.execute("UPDATE public.participants SET last_read_at = clock_timestamp() "
                    "WHERE user_id = %s", (BOB,))
        assert flags(cur) == {ALICE: False, BOB: False}
        cur.execute("SET enable_seqscan = off")
        cur.execute("EXPLAIN SELECT * FROM public.participants p WHERE p.user_id = ANY(%s::uuid[]) "
                    "AND (p.may_have_unread OR p.marked_unread)", ([BOB],))
        plan = "\n".join(row[0] for row in cur.fetchall())
        assert "participants_unread_by_user" in plan
