"""The app's unread function (COUNTS_SOURCE=attached): calling it, and checking it at start-up.

The function is named by configuration, so its name is composed into SQL with
psycopg2.sql.Identifier (quoted by libpq), never formatted in as text.
"""

from collections.abc import Iterable
from uuid import UUID

import psycopg2
from psycopg2 import sql

from counts.postgres.queries.reads import counts_by_user

# The contract the app's function must meet, as pg_get_function_result() spells it.
EXPECTED_RESULT = "TABLE(user_id uuid, conversation_id uuid, unread bigint)"

# Rows the function should not return (unread <= 0, users not asked about) are dropped here, so
# the body has the same shape as in own mode whatever the function does. Ids come back as text,
# ordered, as our own query returns them.
UNREAD_COUNTS = sql.SQL("""
SELECT * FROM (
    SELECT f.user_id::text, f.conversation_id::text, f.unread, 0::bigint AS mentions,
           'all'::text AS notify, false AS marked_unread, NULL::text AS parent_id,
           NULL::text AS badge_policy
    FROM {function}(%(user_ids)s::uuid[]) f
    WHERE f.unread > 0 AND f.user_id = ANY(%(user_ids)s::uuid[])
    UNION ALL
    SELECT user_id::text, NULL, NULL, NULL, NULL, NULL, NULL, badge_policy FROM user_settings
    WHERE user_id = ANY(%(user_ids)s::uuid[]) AND badge_policy IS NOT NULL
) rows
ORDER BY 1, 2
""")

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


def unread_counts_statement(function: tuple[str, str]) -> sql.Composed:
    """The counts statement for the app's function (schema, name)."""
    return UNREAD_COUNTS.format(function=sql.Identifier(*function))


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
    if not returns_set or result != EXPECTED_RESULT:
        return f"it returns {result}"
    if not executable:
        return "the role counts connects as may not EXECUTE it"
    try:
        cur.execute(TRY_FUNCTION.format(function=sql.Identifier(schema, name)))
    except psycopg2.Error as error:
        if error.pgcode is None:
            raise  # the connection failed, not the function
        return f"calling it failed: {(error.pgerror or str(error)).strip().splitlines()[0]}"
    return None
