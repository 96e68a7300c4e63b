"""The migrations record: which versioned SQL files a database has had applied."""

from psycopg2 import sql

CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text        PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""

# Two deploys upgrading at once must not both apply a migration: serialize on one advisory lock.
LOCK_MIGRATIONS = "SELECT pg_advisory_xact_lock(hashtext('counts.schema_migrations'))"

CREATE_SCHEMA = sql.SQL("CREATE SCHEMA IF NOT EXISTS {schema}")

# Only our schema (attached: counts; own: the one unqualified names were always created in), then
# pg_temp last; pg_catalog is searched first anyway. An unqualified name in a migration creates in
# our schema, can never bind to an app's table of the same name in another schema nor to a
# temporary table, and a function made with `SET search_path FROM CURRENT` keeps exactly this
# path (migrations/0004_push_function.sql).
SEARCH_ONLY = """
SELECT set_config('search_path', quote_ident(coalesce(%s, current_schema())) || ', pg_temp', true)
"""

APPLIED_MIGRATIONS = "SELECT version FROM schema_migrations"

RECORD_MIGRATION = "INSERT INTO schema_migrations (version) VALUES (%s)"


def applied_migrations(cur, schema: str | None = None) -> set[str]:
    """Lock migrations for this transaction, work in `schema` (made if missing; None: the schema
    the database's default search_path creates in, as own mode always has) and return the
    versions applied."""
    # Lock first: two upgrades racing on an empty database would both try to create the table.
    cur.execute(LOCK_MIGRATIONS)
    if schema is not None:
        cur.execute(CREATE_SCHEMA.format(schema=sql.Identifier(schema)))
    cur.execute(SEARCH_ONLY, (schema,))
    cur.execute(CREATE_MIGRATIONS_TABLE)
    cur.execute(APPLIED_MIGRATIONS)
    return {row[0] for row in cur.fetchall()}


def apply_migration(cur, version: str, sql_text: str) -> None:
    """Run one migration's SQL and record it, in the caller's transaction."""
    cur.execute(sql_text)
    cur.execute(RECORD_MIGRATION, (version,))
