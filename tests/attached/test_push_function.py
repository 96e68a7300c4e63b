"""counts.push(alert, badge, conversation_id) in SQL: push jobs queued in the caller's transaction,
only for users with a device, held by a device's coalescing window, a wake-up on commit; and, like
counts.bump, callable only by the roles granted it, with nothing of counts writable by them.

No dispatcher runs in this module: the jobs stay for the tests to read.
"""

import psycopg2
import pytest
from psycopg2 import sql

from tests.support.api import new_user
from tests.support.postgres import notifications
from tests.support.supabase_chat import RELAY_BOUND, as_role

CHANNEL = "counts_push"  # the `listener` fixture LISTENs on it
PUSH = "SELECT counts.push(%s::uuid[], %s::uuid[], %s::uuid)"


def ids(*users) -> list[str]:
    """Text ids, as psycopg2 sends them for uuid[]."""
    return [None if user is None else str(user) for user in users]


def test_push_queues_a_job_per_user_with_a_device_once_committed(chat, listener):
    alice, bob, carol = new_user(), new_user(), new_user()
    conversation = new_user()  # any uuid: counts.push does not look the conversation up
    chat.add_device(alice)
    chat.add_device(alice)  # two devices are still one job: the dispatcher fans out
    chat.add_device(bob)
    with chat.admin() as conn, conn.cursor() as cur:
        cur.execute("BEGIN")
        # carol has no device; alice is in both lists (an alert wins); NULLs are ignored.
        cur.execute(PUSH, (ids(alice, carol, None), ids(bob, alice), str(conversation)))
        assert cur.fetchone()[0] == 2
        assert not notifications(listener, 0.2)  # not before the commit...
        cur.execute("COMMIT")
    assert notifications(listener, RELAY_BOUND)  # ...then a wake-up
    assert sorted(chat.push_jobs([alice, bob, carol])) == sorted([
        (str(alice), True, str(conversation)), (str(bob), False, str(conversation))])


def test_a_rolled_back_push_queues_nothing_and_sends_nothing(chat, listener):
    alice, fence = new_user(), new_user()
    chat.add_device(alice)
    chat.add_device(fence)
    with chat.admin() as conn, conn.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute(PUSH, (ids(alice), [], None))
        cur.execute("ROLLBACK")
    assert chat.push_jobs([alice]) == []
    assert not notifications(listener, 0.2)
    with chat.admin() as conn, conn.cursor() as cur:
        cur.execute(PUSH, (ids(fence), [], None))
    assert notifications(listener, RELAY_BOUND)  # the channel works: the rollback's silence was real


@pytest.mark.parametrize("alert, badge", [([], []), ([None], None), (None, None)],
                         ids=["empty", "only nulls", "null"])
def test_pushing_nobody_queues_nothing_and_sends_nothing(chat, listener, alert, badge):
    with chat.admin() as conn, conn.cursor() as cur:
        cur.execute(PUSH, (alert, badge, None))
        assert cur.fetchone()[0] == 0
        deviceless = new_user()
        cur.execute(PUSH, (ids(deviceless), ids(deviceless), None))
        assert cur.fetchone()[0] == 0
    assert not notifications(listener, 0.2)


def test_the_defaults_make_an_alert_for_no_conversation(chat):
    bob = new_user()
    chat.add_device(bob)
    with chat.admin() as conn, conn.cursor() as cur:
        cur.execute("SELECT counts.push(ARRAY[%s]::uuid[])", (str(bob),))
    assert chat.push_jobs([bob]) == [(str(bob), True, None)]


def test_a_device_in_its_coalescing_window_holds_the_job_until_the_window_ends(chat):
    """A burst after a push becomes one push at the window's end (as own mode's writes do)."""
    held, free = new_user(), new_user()
    chat.add_device(held, held_for=3600)
    chat.add_device(free)
    with chat.admin() as conn, conn.cursor() as cur:
        cur.execute(PUSH, (ids(held, free), [], None))
        cur.execute("SELECT j.user_id = %s, j.due_at = d.hold_until, j.due_at <= now() + interval '1 minute'"
                    " FROM counts.push_jobs j JOIN counts.push_devices d USING (user_id)"
                    " WHERE j.user_id IN (%s, %s) ORDER BY 1", (str(held), str(held), str(free)))
        assert cur.fetchall() == [(False, False, True), (True, True, False)]


def test_public_may_not_call_push_and_nobody_may_without_a_grant(chat, owner):
    owner.execute("SELECT has_function_privilege('public', 'counts.push(uuid[], uuid[], uuid)', 'EXECUTE')")
    assert owner.fetchone()[0] is False
    owner.execute(sql.SQL("GRANT USAGE ON SCHEMA counts TO {}").format(
        sql.Identifier(chat.roles["authenticated"])))
    as_role(owner, chat.roles["authenticated"])  # not granted in the example
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        owner.execute("SELECT counts.push(ARRAY[gen_random_uuid()])")


def test_a_granted_role_can_push_but_write_nothing_else_of_push(chat, owner):
    role = chat.roles["service_role"]  # granted EXECUTE by the example's grants.sql
    user = new_user()
    chat.add_device(user)
    as_role(owner, role)
    owner.execute(PUSH, (ids(user), [], None))
    assert owner.fetchone()[0] == 1
    for statement in ("INSERT INTO counts.push_jobs (user_id, alert) VALUES (gen_random_uuid(), true)",
                      "SELECT * FROM counts.push_jobs",
                      "DELETE FROM counts.push_jobs",
                      "SELECT token FROM counts.push_devices",
                      "UPDATE counts.push_devices SET hold_until = 'infinity'",
                      "CREATE FUNCTION counts.push(x int) RETURNS int LANGUAGE sql AS 'SELECT 1'"):
        owner.execute("SAVEPOINT attempt")
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            owner.execute(statement)
        owner.execute("ROLLBACK TO SAVEPOINT attempt")


def test_a_callers_temporary_tables_cannot_stand_in_for_the_push_tables(chat, owner):
    """search_path pinned to counts, then pg_temp: the job reaches counts.push_jobs, and a
    temporary push_devices cannot invent a device."""
    user, invented = new_user(), new_user()
    chat.add_device(user)
    as_role(owner, chat.roles["service_role"])
    owner.execute("CREATE TEMPORARY TABLE push_jobs (id bigserial, user_id uuid, alert boolean,"
                  " conversation_id uuid, device_id uuid, attempts int DEFAULT 0,"
                  " created_at timestamptz DEFAULT now(), due_at timestamptz DEFAULT now())")
    owner.execute("CREATE TEMPORARY TABLE push_devices (user_id uuid, hold_until timestamptz)")
    owner.execute("INSERT INTO pg_temp.push_devices VALUES (%s, '-infinity')", (str(invented),))
    owner.execute("SET LOCAL search_path = pg_temp, counts, public")
    owner.execute(PUSH, (ids(user, invented), [], None))
    assert owner.fetchone()[0] == 1  # the real device's user only
    owner.execute("SELECT count(*) FROM pg_temp.push_jobs")
    assert owner.fetchone()[0] == 0
    owner.execute("RESET ROLE")
    owner.execute("SELECT user_id::text FROM counts.push_jobs WHERE user_id IN (%s, %s)",
                  (str(user), str(invented)))
    assert owner.fetchall() == [(str(user),)]
