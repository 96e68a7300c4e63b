"""Versioned SQL migrations (`NNNN_name.sql`), applied by `flask --app app db upgrade`.

Three directories, so that each mode gets what it needs and nothing of the other's:

- `own/` (COUNTS_SOURCE=own): our chat schema (conversations, members, messages) and the outbox
  it has always had, in the database's default schema (public), where every deployment made
  before attached mode has them. Nothing of own mode moves.
- `attached/` (COUNTS_SOURCE=attached): only what counts needs beside the app's tables (the
  outbox, `counts.bump()`), in a schema of its own, `counts`.
- here, at the top: what BOTH modes need (the push tables, and push(), which queues push jobs
  for our writes and for the app's triggers alike), written once and unqualified. Each mode
  applies them with its own schema alone on the search_path (then pg_temp), so they land beside
  that mode's outbox (public in own mode, counts in attached mode), a function made with
  `SET search_path FROM CURRENT` keeps that path, and our connections search that schema first
  (counts.postgres.pool.Database(schema=...)), so the code that uses them is the same in both modes too.

A mode applies its directory and the top one in file-name order, each file once, recording it in
its schema's `schema_migrations`, in one transaction under an advisory lock (a second, concurrent
upgrade waits, then finds nothing to do). Numbers are shared: a new file takes the next number
after every file in all three directories, so it sorts after whatever it builds on.

Why own mode's outbox does not move to `counts` too: a rolling deploy would leave old workers
writing to a table that had moved under them.
"""

from importlib import resources
from importlib.resources.abc import Traversable

from counts.postgres.pool import Database
from counts.postgres.queries import migrations as migration_sql


def _sql_files(directory: Traversable) -> list[Traversable]:
    """The migration files directly in `directory`."""
    return [f for f in directory.iterdir() if f.is_file() and f.name.endswith(".sql")]


def available(mode: str = "own") -> list[tuple[str, str]]:
    """(version, sql) for every migration a mode (own, attached) applies, in order."""
    root = resources.files(__package__)
    files = sorted(_sql_files(root / mode) + _sql_files(root), key=lambda f: f.name)
    return [(f.name.removesuffix(".sql"), f.read_text()) for f in files]


def upgrade(db: Database, mode: str = "own", schema: str | None = None) -> list[str]:
    """Apply the migrations the database lacks for `mode`, in `schema` (None: the database's
    default, as own mode always has), in one transaction; the versions applied."""

    def apply_missing(cur) -> list[str]:
        done = migration_sql.applied_migrations(cur, schema)
        applied = []
        for version, sql in available(mode):
            if version not in done:
                migration_sql.apply_migration(cur, version, sql)
                applied.append(version)
        return applied

    return db.run(apply_missing)
