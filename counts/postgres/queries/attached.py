"""The app's unread function (COUNTS_SOURCE=attached): calling it, and checking it at start-up.

The function is named by configuration, so its name is composed into SQL with
psycopg2.sql.Identifier (quoted by libpq), never formatted in as text.
"""

from collections.abc import Iterable
from uuid import UUID

import psycopg2
from psycopg2 import sql

from counts.postgres.queries.reads import counts_by_user

# The contract the app's function must meet: its result columns, read by name, in any order.
# The first three are required (the contract before issue 19, so every function written for it
# keeps working); any subset of the others may follow, and what is missing takes its default.
REQUIRED_COLUMNS = {"user_id": "uuid", "conversation_id": "uuid", "unread": "bigint"}
OPTIONAL_COLUMNS = {"mentions": "bigint", "notify": "text", "marked_unread": "boolean",
                    "parent_id": "uuid"}
EXPECTED_RESULT = ("TABLE(user_id uuid, conversation_id uuid, unread bigint), in any order, with "
                   "any of mentions bigint, notify text, marked_unread boolean, parent_id uuid")

# How each optional column is read, and its default when the function has none. An unknown or
# NULL notify level counts as `all` (reads.known_level), so a request never fails on the app's
# data.
_READ = {"mentions": "greatest(coalesce(f.{0}, 0), 0)", "notify": "coalesce(f.{0}, 'all')",
         "marked_unread": "coalesce(f.{0}, false)", "parent_id": "f.{0}::text"}
_DEFAULT = {"mentions": "0::bigint", "notify": "'all'::text", "marked_unread": "false",
            "parent_id": "NULL::text"}

# Rows the function should not return (nothing unread, unmentioned and unmarked; users not asked
# about) are dropped here, so the body has the same shape as in own mode whatever the function
# does. Ids come back as text, ordered, as our own query returns them; the users' badge policies
# ride along (user_settings, in our schema), as in own mode.
UNREAD_COUNTS = sql.SQL("""
SELECT * FROM (
    SELECT * FROM (
        SELECT f.user_id::text, f.conversation_id::text, greatest(f.unread, 0) AS unread,
               {mentions} AS mentions, {notify} AS notify, {marked_unread} AS marked_unread,
               {parent_id} AS parent_id, NULL::text AS badge_policy
        FROM {function}(%(user_ids)s::uuid[]) f
        WHERE f.user_id = ANY(%(user_ids)s::uuid[])
    ) listed
    WHERE unread > 0 OR mentions > 0 OR marked_unread
    UNION ALL
    SELECT user_id::text, NULL, NULL, NULL, NULL, NULL, NULL, badge_policy FROM user_settings
    WHERE user_id = ANY(%(user_ids)s::uuid[]) AND badge_policy IS NOT NULL
) rows
ORDER BY 1, 2
""")

# The function's result columns (its TABLE(...) or OUT parameters), in order, with their types.
RESULT_COLUMNS = """
SELECT a.name, format_type(a.type, NULL)
FROM pg_proc p
CROSS JOIN LATERAL unnest(p.proargnames, p.proallargtypes, p.proargmodes)
    WITH ORDINALITY AS a(name, type, mode, position)
WHERE p.oid = %s AND a.mode IN ('t', 'o', 'b')
ORDER BY a.position
"""

# to_regprocedure is NULL (not an error) when the schema or the function is missing.
FIND_FUNCTION = "SELECT to_regprocedure(format('%%I.%%I(uuid[])', %s, %s))::oid"

DESCRIBE_FUNCTION = """
SELECT p.prokind, p.proretset, pg_get_function_result(p.oid),
       has_function_privilege(p.oid, 'EXECUTE')
FROM pg_proc p WHERE p.oid = %s
"""

SIGNATURES = """
SELECT p.oid::regprocedure::text || ' RETURNS ' || coalesce(pg_get_function_result(p.oid), '')
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = %s AND p.proname = %s
ORDER BY 1
"""

# Runs the function once for nobody: a function that no longer compiles (a dropped table or
# column) or reads a table we may not read fails here, at start-up, not on the first 200.
TRY_FUNCTION = sql.SQL("SELECT count(*) FROM {function}('{{}}'::uuid[])")


def unread_counts_statement(function: tuple[str, str], columns: Iterable[str]) -> sql.Composed:
    """The counts statement for the app's function (schema, name), reading the optional columns
    it has and defaulting the others."""
    present = set(columns)
    parts = {name: sql.SQL(_READ[name]).format(sql.Identifier(name)) if name in present
             else sql.SQL(_DEFAULT[name]) for name in OPTIONAL_COLUMNS}
    return UNREAD_COUNTS.format(function=sql.Identifier(*function), **parts)


def result_columns(cur, function: tuple[str, str]) -> dict[str, str] | None:
    """The function's result columns and their types, or None if it does not exist."""
    cur.execute(FIND_FUNCTION, function)
    oid = cur.fetchone()[0]
    if oid is None:
        return None
    cur.execute(RESULT_COLUMNS, (oid,))
    return dict(cur.fetchall())


def columns_problem(columns: dict[str, str]) -> str | None:
    """What is wrong with a function's result columns for counts, or None."""
    expected = {**REQUIRED_COLUMNS, **OPTIONAL_COLUMNS}
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    wrong = [f"{name} is {kind}, not {expected[name]}" for name, kind in columns.items()
             if name in expected and kind != expected[name]]
    unknown = [name for name in columns if name not in expected]
    if not (missing or wrong or unknown):
        return None
    said = ([f"it has no column {', '.join(missing)}"] if missing else []) + wrong + (
        [f"counts knows no column {', '.join(unknown)}"] if unknown else [])
    return "; ".join(said)


def unread_counts(cur, statement: sql.Composed, user_ids: Iterable[UUID],
                  policy: str = "messages") -> dict[UUID, dict]:
    """Unread counts for each user, from the app's function, in our body's shape."""
    return counts_by_user(cur, statement, user_ids, policy)


def function_problem(cur, function: tuple[str, str]) -> str | None:
    """What is wrong with the app's function for counts (missing, wrong shape, not ours to call),
    or None when it meets the contract."""
    schema, name = function
    cur.execute(FIND_FUNCTION, (schema, name))
    oid = cur.fetchone()[0]
    if oid is None:
        cur.execute(SIGNATURES, (schema, name))
        found = [row[0] for row in cur.fetchall()]
        return ("it does not exist" if not found
                else "it takes other arguments: " + "; ".join(found))
    cur.execute(DESCRIBE_FUNCTION, (oid,))
    kind, returns_set, result, executable = cur.fetchone()
    if kind != "f":
        return "it is not a plain function (an aggregate, window function or procedure)"
    cur.execute(RESULT_COLUMNS, (oid,))
    wrong = columns_problem(dict(cur.fetchall())) if returns_set else "not a set of rows"
    if wrong is not None:
        return f"it returns {result}" + ("" if not returns_set else f": {wrong}")
    if not executable:
        return "the role counts connects as may not EXECUTE it"
    try:
        cur.execute(TRY_FUNCTION.format(function=sql.Identifier(schema, name)))
    except psycopg2.Error as error:
        if error.pgcode is None:
            raise  # the connection failed, not the function
        return f"calling it failed: {(error.pgerror or str(error)).strip().splitlines()[0]}"
    return None
