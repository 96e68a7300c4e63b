"""counts.bump(uuid[]) in SQL: an outbox row and a notification delivered only on commit
(invariant 1 by construction), and nothing of counts writable by the roles that may call it."""

import psycopg2
import pytest
from psycopg2 import sql

from tests.support.api import new_user
from tests.support.postgres import notifications
from tests.support.supabase_chat import RELAY_BOUND, as_role

CHANNEL = "counts_bumps"  # the `listener` fixture LISTENs on it


def outbox_rows(chat, users) -> list[list[str]]:
    """The outbox rows naming any of these users, as lists of text ids."""
    with chat.admin() as conn, conn.cursor() as cur:
        cur.execute("SELECT user_ids::text[] FROM counts.marker_outbox WHERE user_ids && %s::uuid[]"
                    " ORDER BY id", ([str(u) for u in users],))
        return [row[0] for row in cur.fetchall()]


def test_bump_records_the_users_once_committed_and_notifies(chat, listener):
    alice, bob = new_user(), new_user()
    with chat.admin() as conn, conn.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("SELECT counts.bump(%s::uuid[])", ([str(alice), None, str(bob)],))
        cur.execute("SELECT counts.bump(%s::uuid[])", ([str(alice)],))
        assert notifications(listener, 0.2) == 0  # not before the commit...
        cur.execute("COMMIT")
    assert notifications(listener, RELAY_BOUND) == 1  # ...then once, however many calls
    assert outbox_rows(chat, [alice, bob]) == [[str(alice), str(bob)], [str(alice)]]


def test_rolled_back_bump_leaves_no_row_and_sends_nothing(chat, listener):
    alice, fence = new_user(), new_user()
    with chat.admin() as conn, conn.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("SELECT counts.bump(%s::uuid[])", ([str(alice)],))
        cur.execute("ROLLBACK")
        cur.execute("BEGIN")
        cur.execute("SELECT counts.bump(%s::uuid[])", ([str(fence)],))
        cur.execute("COMMIT")
    # Notifications arrive in commit order: one, the fence's, means the rollback sent none.
    assert notifications(listener, RELAY_BOUND) == 1
    assert outbox_rows(chat, [alice]) == []


@pytest.mark.parametrize("users", [[], [None], None], ids=["empty", "only nulls", "null"])
def test_bumping_nobody_records_and_sends_nothing(chat, listener, users):
    with chat.admin() as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM counts.marker_outbox")
        before = cur.fetchone()[0]
        cur.execute("SELECT counts.bump(%s::uuid[])", (users,))
    assert notifications(listener, 0.2) == 0
    with chat.admin() as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM counts.marker_outbox")
        assert cur.fetchone()[0] <= before  # a relay may have drained meanwhile, never added


def test_nobody_may_call_bump_without_a_grant(chat, owner):
    """EXECUTE is revoked from PUBLIC: authenticated (not granted in the example) is refused."""
    owner.execute(sql.SQL("GRANT USAGE ON SCHEMA counts TO {}").format(
        sql.Identifier(chat.roles["authenticated"])))
    as_role(owner, chat.roles["authenticated"])
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        owner.execute("SELECT counts.bump(ARRAY[gen_random_uuid()])")


def test_a_granted_role_can_bump_but_write_nothing_else_of_counts(chat, owner):
    role = chat.roles["service_role"]  # granted EXECUTE by the example's grants.sql
    user = new_user()
    as_role(owner, role)
    owner.execute("SELECT counts.bump(%s::uuid[])", ([str(user)],))
    for statement in ("INSERT INTO counts.marker_outbox (user_ids) VALUES ('{}')",
                      "DELETE FROM counts.marker_outbox",
                      "SELECT * FROM counts.marker_outbox",
                      "UPDATE counts.schema_migrations SET version = version",
                      "CREATE TABLE counts.mine (x int)",
                      "CREATE FUNCTION counts.bump(x int) RETURNS int LANGUAGE sql AS 'SELECT 1'"):
        owner.execute("SAVEPOINT attempt")
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            owner.execute(statement)
        owner.execute("ROLLBACK TO SAVEPOINT attempt")
    owner.execute("RESET ROLE")
    owner.execute("SELECT user_ids::text[] FROM counts.marker_outbox WHERE user_ids @> %s::uuid[]",
                  ([str(user)],))
    assert owner.fetchall() == [([str(user)],)]


def test_a_callers_temporary_table_cannot_stand_in_for_the_outbox(chat, owner):
    """search_path pinned with pg_temp last, names qualified: the row reaches counts' outbox."""
    as_role(owner, chat.roles["service_role"])
    owner.execute("CREATE TEMPORARY TABLE marker_outbox (id bigserial, user_ids uuid[], "
                  "created_at timestamptz DEFAULT now())")
    owner.execute("SET LOCAL search_path = pg_temp, counts, public")
    user = new_user()
    owner.execute("SELECT counts.bump(%s::uuid[])", ([str(user)],))
    owner.execute("SELECT count(*) FROM pg_temp.marker_outbox")
    assert owner.fetchone()[0] == 0
    owner.execute("RESET ROLE")
    owner.execute("SELECT count(*) FROM counts.marker_outbox WHERE user_ids @> %s::uuid[]",
                  ([str(user)],))
    assert owner.fetchone()[0] == 1


def test_a_security_invoker_trigger_works_for_a_writer_granted_execute(chat, owner):
    """The other way to wire it: triggers that run as whoever writes (then EXECUTE goes to every
    writing role, on Supabase authenticated and service_role)."""
    writer = chat.roles["authenticated"]
    owner.execute("""
        CREATE TABLE public.invoker_notes (owner_id uuid NOT NULL);
        CREATE FUNCTION public.invoker_bump() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM counts.bump(ARRAY[NEW.owner_id]); RETURN NULL; END $$;
        CREATE TRIGGER bump AFTER INSERT ON public.invoker_notes
            FOR EACH ROW EXECUTE FUNCTION public.invoker_bump();
    """)
    owner.execute(sql.SQL("GRANT INSERT ON public.invoker_notes TO {role};"
                          "GRANT USAGE ON SCHEMA counts TO {role};"
                          "GRANT EXECUTE ON FUNCTION counts.bump(uuid[]) TO {role}").format(
        role=sql.Identifier(writer)))
    user = new_user()
    as_role(owner, writer)
    owner.execute("INSERT INTO public.invoker_notes VALUES (%s)", (str(user),))
    owner.execute("RESET ROLE")
    owner.execute("SELECT count(*) FROM counts.marker_outbox WHERE user_ids @> %s::uuid[]",
                  ([str(user)],))
    assert owner.fetchone()[0] == 1
