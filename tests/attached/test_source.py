"""counts.sources and COUNTS_UNREAD_FUNCTION: the name as Postgres reads it, the start-up check of
the function's shape, and counts read through it in the body's one shape."""

import psycopg2
import pytest
from psycopg2 import sql

from counts.observability import metrics
from counts.postgres.queries import reads
from counts.settings import Settings, function_name
from counts.sources import check_at_start, from_settings
from counts.sources.attached import AttachedSource
from counts.sources.own import OwnSource
from tests.support.api import new_user
from tests.support.environment import SECRET


def parse_function_name(raw: str) -> tuple[str, str] | None:
    """COUNTS_UNREAD_FUNCTION as the settings read it."""
    return function_name(raw, "COUNTS_UNREAD_FUNCTION")

GOOD_BODY = "SELECT u, u, 1::bigint FROM unnest(user_ids) u"
CONTRACT = "(user_ids uuid[]) RETURNS TABLE (user_id uuid, conversation_id uuid, unread bigint)"


@pytest.fixture
def owner(chat):
    """A transaction as the owner in a scratch schema `checks`, rolled back after the test."""
    with chat.admin() as conn:
        conn.autocommit = False
        with conn.cursor() as cur:
            cur.execute("CREATE SCHEMA checks")
            yield cur
        conn.rollback()


# --- the name ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "parsed"), [
    ("public.counts_unread", ("public", "counts_unread")),
    ("Public.Counts_Unread", ("public", "counts_unread")),  # unquoted: folded, as Postgres does
    ('"Chat App"."Unread"', ("Chat App", "Unread")),  # quoted: kept
    ('app."say ""hi"""', ("app", 'say "hi"')),
    (" app.f$1 ", ("app", "f$1")),
])
def test_function_names_are_read_as_postgres_reads_them(raw, parsed):
    assert parse_function_name(raw) == parsed


@pytest.mark.parametrize("raw", ["counts_unread", "a.b.c", "public.", ".f", "public.f()",
                                 "public.f; DROP TABLE messages", 'public."f', "1abc.f"])
def test_a_name_that_is_not_schema_dot_function_fails_at_start_up(raw):
    with pytest.raises(RuntimeError, match="COUNTS_UNREAD_FUNCTION must name a function"):
        Settings.from_env({"COUNTS_JWT_SECRET": SECRET, "COUNTS_SOURCE": "attached",
                           "COUNTS_UNREAD_FUNCTION": raw})


def test_config_chooses_the_source():
    base = {"COUNTS_JWT_SECRET": SECRET}
    assert Settings.from_env(base).source.mode == "own"
    assert isinstance(from_settings(Settings.from_env(base).source), OwnSource)
    attached = Settings.from_env({**base, "COUNTS_SOURCE": "attached",
                                  "COUNTS_UNREAD_FUNCTION": "app.unread"})
    source = from_settings(attached.source)
    assert isinstance(source, AttachedSource) and source.function == ("app", "unread")
    assert (source.schema, source.writable, source.relays_bumps) == ("counts", False, True)


@pytest.mark.parametrize(("env", "message"), [
    ({"COUNTS_SOURCE": "theirs"}, "COUNTS_SOURCE must be one of own, attached"),
    ({"COUNTS_SOURCE": "attached"}, "COUNTS_SOURCE=attached needs COUNTS_UNREAD_FUNCTION"),
    ({"COUNTS_SOURCE": "attached", "COUNTS_UNREAD_FUNCTION": "unread"}, "must name a function"),
])
def test_bad_source_settings_fail_at_start_up(env, message):
    with pytest.raises(RuntimeError, match=message):
        Settings.from_env({"COUNTS_JWT_SECRET": SECRET, **env})


# --- the function's shape ----------------------------------------------------------------------

def problem(cur, name: str) -> str | None:
    """What the start-up check says of the function `name`."""
    return AttachedSource(parse_function_name(name)).problem(cur)


def test_the_examples_function_meets_the_contract(chat):
    with chat.admin() as conn, conn.cursor() as cur:
        assert problem(cur, "public.counts_unread") is None


@pytest.mark.parametrize(("definition", "expected"), [
    (None, "it does not exist"),
    ("FUNCTION checks.unread(ids text[]) RETURNS TABLE (user_id uuid, conversation_id uuid, "
     "unread bigint) LANGUAGE sql AS 'SELECT NULL::uuid, NULL::uuid, 0::bigint'",
     "it takes other arguments: checks.unread(text[]) RETURNS TABLE("),
    ("FUNCTION checks.unread(user_ids uuid[]) RETURNS TABLE (user_id uuid, conversation_id uuid, "
     "unread integer) LANGUAGE sql AS 'SELECT NULL::uuid, NULL::uuid, 0'",
     "it returns TABLE(user_id uuid, conversation_id uuid, unread integer)"),
    ("FUNCTION checks.unread(user_ids uuid[]) RETURNS TABLE (user_id uuid, conversation_id uuid, "
     "unread bigint, mentions integer, muted boolean) LANGUAGE sql AS "
     "'SELECT NULL::uuid, NULL::uuid, 0::bigint, 0, false'",
     "it returns TABLE(user_id uuid, conversation_id uuid, unread bigint, mentions integer, muted "
     "boolean): mentions is integer, not bigint; counts knows no column muted"),
    ("FUNCTION checks.unread(user_ids uuid[]) RETURNS bigint LANGUAGE sql AS 'SELECT 0::bigint'",
     "it returns bigint"),
    ("PROCEDURE checks.unread(user_ids uuid[]) LANGUAGE sql AS 'SELECT 1'",
     "it is not a plain function"),
    ("FUNCTION checks.unread(user_ids uuid[]) RETURNS TABLE (user_id uuid, conversation_id uuid, "
     "unread bigint) LANGUAGE plpgsql AS 'BEGIN RETURN QUERY SELECT * FROM checks.gone; END'",
     'calling it failed: ERROR:  relation "checks.gone" does not exist'),
], ids=["missing", "other arguments", "unread integer", "wrong or unknown column", "not a set",
        "procedure", "body fails"])
def test_a_function_that_breaks_the_contract_is_refused_with_the_reason(owner, definition, expected):
    if definition is not None:
        owner.execute(f"CREATE {definition}")
    found = problem(owner, "checks.unread")
    assert found.startswith(f"COUNTS_UNREAD_FUNCTION checks.unread: {expected}"), found
    assert ("counts needs checks.unread(user_ids uuid[]) RETURNS TABLE(user_id uuid, "
            "conversation_id uuid, unread bigint)") in found  # and it says what counts needs


def test_a_schema_that_does_not_exist_is_a_missing_function(chat):
    with chat.admin() as conn, conn.cursor() as cur:
        assert "it does not exist" in problem(cur, "nowhere.unread")


def test_a_function_counts_may_not_execute_is_refused(chat, owner):
    owner.execute(f"CREATE FUNCTION checks.unread{CONTRACT} LANGUAGE sql AS '{GOOD_BODY}'")
    owner.execute("REVOKE EXECUTE ON FUNCTION checks.unread(uuid[]) FROM PUBLIC")
    owner.execute("GRANT USAGE ON SCHEMA checks TO PUBLIC")
    owner.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(chat.roles["service_role"])))
    assert "may not EXECUTE it" in problem(owner, "checks.unread")


def test_check_at_start_refuses_with_the_reason_and_warns_without_postgres(chat):
    env = {"COUNTS_JWT_SECRET": SECRET, "DATABASE_URL": chat.url, "COUNTS_PG_TIMEOUT": "2",
           "COUNTS_SOURCE": "attached"}

    def check(**changes):
        return check_at_start(Settings.from_env({**env, **changes}))

    assert check(COUNTS_UNREAD_FUNCTION="public.counts_unread") is None
    with pytest.raises(RuntimeError, match=r"COUNTS_UNREAD_FUNCTION public\.nope: it does not exist"):
        check(COUNTS_UNREAD_FUNCTION="public.nope")
    unreachable = check(COUNTS_UNREAD_FUNCTION="public.nope",
                        DATABASE_URL="postgresql://postgres@127.0.0.1:1/nothing")
    assert unreachable.startswith("could not check COUNTS_SOURCE=attached")
    # own mode: nothing to check, no connection
    assert check(COUNTS_SOURCE="own", DATABASE_URL="postgresql://postgres@127.0.0.1:1/x") is None


# --- counts through the function ---------------------------------------------------------------

def test_quoted_names_are_called_safely(owner):
    owner.execute('CREATE SCHEMA "Chat App"')
    owner.execute(f'CREATE FUNCTION "Chat App"."Unread; --"{CONTRACT} LANGUAGE sql AS \'{GOOD_BODY}\'')
    source = AttachedSource(parse_function_name('"Chat App"."Unread; --"'))
    assert source.problem(owner) is None
    user = new_user()
    assert source.unread_counts(owner, [user])[user]["total"] == 1


def test_rows_the_function_should_not_return_are_dropped(owner):
    alice, bob, stranger = new_user(), new_user(), new_user()
    owner.execute(f"""CREATE FUNCTION checks.unread{CONTRACT} LANGUAGE sql AS $$
        SELECT u, '00000000-0000-4000-8000-00000000000b'::uuid, 2::bigint FROM unnest(user_ids) u
        UNION ALL SELECT u, '00000000-0000-4000-8000-00000000000a'::uuid, 1 FROM unnest(user_ids) u
        UNION ALL SELECT u, gen_random_uuid(), 0 FROM unnest(user_ids) u
        UNION ALL SELECT u, gen_random_uuid(), -3 FROM unnest(user_ids) u
        UNION ALL SELECT '{stranger}'::uuid, gen_random_uuid(), 5 $$""")
    counts = AttachedSource(("checks", "unread")).unread_counts(owner, [alice, bob])
    assert set(counts) == {alice, bob}
    plain = {"mentions": 0, "notify": "all", "marked_unread": False, "parent_id": None}
    assert counts[alice] == {
        "total": 3, "unread_conversations": 2, "mentions": 0, "badge": 3,
        "threads": {"unread": 0, "unread_threads": 0, "mentions": 0}, "conversations": [
            {"conversation_id": "00000000-0000-4000-8000-00000000000a", "unread": 1, **plain},
            {"conversation_id": "00000000-0000-4000-8000-00000000000b", "unread": 2, **plain}]}


def test_both_sources_answer_in_one_shape(owner, database_url):
    user = new_user()
    owner.execute(f"CREATE FUNCTION checks.unread{CONTRACT} LANGUAGE sql AS 'SELECT NULL::uuid, NULL::uuid, "
                  "0::bigint WHERE false'")
    attached = AttachedSource(("checks", "unread")).unread_counts(owner, [user])
    conn = psycopg2.connect(database_url)  # our own schema, in the own-mode test database
    try:
        with conn.cursor() as cur:
            own = OwnSource().unread_counts(cur, [user])
    finally:
        conn.close()
    assert attached == own == {user: {
        "total": 0, "unread_conversations": 0, "mentions": 0, "badge": 0,
        "threads": {"unread": 0, "unread_threads": 0, "mentions": 0}, "conversations": []}}


def test_optional_columns_are_read_by_name_in_any_order(owner):
    user, parent = new_user(), "00000000-0000-4000-8000-0000000000aa"
    owner.execute(f"""CREATE FUNCTION checks.unread(user_ids uuid[]) RETURNS TABLE (
            notify text, conversation_id uuid, marked_unread boolean, user_id uuid,
            parent_id uuid, unread bigint, mentions bigint) LANGUAGE sql AS $$
        SELECT 'mentions', '00000000-0000-4000-8000-00000000000a'::uuid, false, u, NULL::uuid,
               4::bigint, 1::bigint FROM unnest(user_ids) u
        UNION ALL SELECT 'all', '00000000-0000-4000-8000-00000000000b'::uuid, true, u, NULL,
               0, 0 FROM unnest(user_ids) u
        UNION ALL SELECT 'all', '00000000-0000-4000-8000-00000000000c'::uuid, false, u,
               '{parent}'::uuid, 2, 0 FROM unnest(user_ids) u
        UNION ALL SELECT 'all', gen_random_uuid(), false, u, NULL, 0, 0 FROM unnest(user_ids) u
        $$""")
    source = AttachedSource(("checks", "unread"))
    assert source.problem(owner) is None
    counts = source.unread_counts(owner, [user])[user]
    assert [(e["conversation_id"][-1], e["unread"], e["mentions"], e["notify"], e["marked_unread"],
             e["parent_id"]) for e in counts["conversations"]] == [
        ("a", 4, 1, "mentions", False, None), ("b", 0, 0, "all", True, None),
        ("c", 2, 0, "all", False, parent)]
    assert (counts["total"], counts["unread_conversations"], counts["mentions"],
            counts["badge"]) == (0, 1, 1, 1 + 1 + 2)
    assert counts["threads"] == {"unread": 2, "unread_threads": 1, "mentions": 0}


def test_an_unknown_notify_level_counts_as_all_logged_once_and_counted(owner, caplog, monkeypatch):
    monkeypatch.setattr(reads, "_said_unknown_levels", set())
    user = new_user()
    owner.execute("""CREATE FUNCTION checks.unread(user_ids uuid[]) RETURNS TABLE (
            user_id uuid, conversation_id uuid, unread bigint, notify text) LANGUAGE sql AS $$
        SELECT u, gen_random_uuid(), 3::bigint, 'muted-forever' FROM unnest(user_ids) u $$""")
    source = AttachedSource(("checks", "unread"))
    before = metrics.UNKNOWN_NOTIFY_LEVELS._value.get()
    for _ in range(2):
        counts = source.unread_counts(owner, [user])[user]
        assert (counts["total"], counts["conversations"][0]["notify"]) == (3, "all")
    assert metrics.UNKNOWN_NOTIFY_LEVELS._value.get() == before + 2
    assert [r.levelname for r in caplog.records if "muted-forever" in r.getMessage()] == ["WARNING"]
