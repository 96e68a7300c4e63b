"""The migrations record: which versioned SQL files a database has had applied."""

CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text        PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""

# Two deploys upgrading at once must not both apply a migration: serialize on one advisory lock.
LOCK_MIGRATIONS = "SELECT pg_advisory_xact_lock(hashtext('counts.schema_migrations'))"

APPLIED_MIGRATIONS = "SELECT version FROM schema_migrations"

RECORD_MIGRATION = "INSERT INTO schema_migrations (version) VALUES (%s)"


def applied_migrations(cur) -> set[str]:
    """Lock migrations for this transaction and return the versions recorded as applied."""
    # Lock first: two upgrades racing on an empty database would both try to create the table.
    cur.execute(LOCK_MIGRATIONS)
    cur.execute(CREATE_MIGRATIONS_TABLE)
    cur.execute(APPLIED_MIGRATIONS)
    return {row[0] for row in cur.fetchall()}


def apply_migration(cur, version: str, sql: str) -> None:
    """Run one migration's SQL and record it, in the caller's transaction."""
    cur.execute(sql)
    cur.execute(RECORD_MIGRATION, (version,))
