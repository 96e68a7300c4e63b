"""Versioned SQL migrations: `NNNN_name.sql` files applied in order, each recorded once."""

from importlib import resources

from counts.queries import migrations as migration_sql


def available() -> list[tuple[str, str]]:
    """(version, sql) for every migration file shipped with the package, in order."""
    files = sorted(f for f in resources.files(__package__).iterdir() if f.name.endswith(".sql"))
    return [(f.name.removesuffix(".sql"), f.read_text()) for f in files]


def upgrade(db) -> list[str]:
    """Apply the migrations the database lacks, in one transaction; the versions applied."""

    def apply_missing(cur) -> list[str]:
        done = migration_sql.applied_migrations(cur)
        applied = []
        for version, sql in available():
            if version not in done:
                migration_sql.apply_migration(cur, version, sql)
                applied.append(version)
        return applied

    return db.run(apply_missing)
