"""counts.postgres.migrations in attached mode: only the schema counts, never the app's tables; idempotent
and safe when concurrent; and the layout that lets one shared file serve both modes."""

import re
import threading
from pathlib import Path

import psycopg2
import pytest

from counts.postgres import migrations
from counts.postgres.pool import Database
from counts.sources.attached import SCHEMA, AttachedSource
from counts.sources.own import OwnSource
from tests.support.postgres import query, throwaway_database

ATTACHED = AttachedSource(("public", "counts_unread"))
PACKAGE = Path(migrations.__file__).parent


def relations(url: str) -> set[str]:
    """schema.name of every table, sequence and function outside the system schemas."""
    return {row[0] for row in query(url, """
        SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'S') AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
        UNION ALL
        SELECT n.nspname || '.' || p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')""")}


def upgrade(url: str, source=ATTACHED) -> list[str]:
    """Upgrade the database at `url` as `db upgrade` does in the source's mode."""
    db = Database(url, timeout=10, pool_size=1, schema=source.schema)
    try:
        return migrations.upgrade(db, source.name, source.schema)
    finally:
        db.close()


@pytest.fixture
def app_url():
    """A database holding an app's own tables, two of them named as counts' own are."""
    with throwaway_database("counts_test_attached_migrations") as url:
        conn = psycopg2.connect(url)
        with conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE public.schema_migrations (version text PRIMARY KEY);"
                        "INSERT INTO public.schema_migrations VALUES ('20240101_app');"
                        "CREATE TABLE public.marker_outbox (note text)")
        conn.close()
        yield url


def test_attached_upgrade_creates_only_schema_counts_and_leaves_the_app_alone(app_url):
    before = relations(app_url)
    applied = upgrade(app_url)
    assert applied == [version for version, _ in migrations.available(ATTACHED.name)]
    created = relations(app_url) - before
    assert {"counts.marker_outbox", "counts.marker_outbox_id_seq", "counts.schema_migrations",
            "counts.bump", "counts.push_jobs", "counts.push_devices", "counts.push_leases",
            "counts.push_tickets",
            "counts.push"} <= created
    assert all(name.startswith("counts.") for name in created), created
    assert query(app_url, "SELECT version FROM public.schema_migrations") == [("20240101_app",)]
    assert query(app_url, "SELECT version FROM counts.schema_migrations ORDER BY 1") == [
        (version,) for version in applied]
    assert upgrade(app_url) == []  # idempotent


def test_concurrent_attached_upgrades_apply_each_migration_once(app_url):
    start = threading.Barrier(2)
    applied, errors = [], []

    def run():
        try:
            start.wait()
            applied.append(upgrade(app_url))
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(v for versions in applied for v in versions) == [
        version for version, _ in migrations.available(ATTACHED.name)]


def test_a_shared_migration_lands_beside_each_modes_outbox(tmp_path, monkeypatch):
    """A file at the top of counts/migrations/ (service tables both modes need) is written once,
    unqualified, and lands in public in own mode and in counts in attached mode."""
    for track in ("own", "attached"):
        (tmp_path / track).mkdir()
        for file in (PACKAGE / track).glob("*.sql"):
            (tmp_path / track / file.name).write_text(file.read_text())
    (tmp_path / "0999_devices.sql").write_text(
        "CREATE TABLE devices (user_id uuid NOT NULL);"
        "ALTER TABLE marker_outbox ADD COLUMN alert boolean NOT NULL DEFAULT false;")
    monkeypatch.setattr(migrations.resources, "files", lambda package: tmp_path)
    with throwaway_database("counts_test_shared_own") as own_url, \
            throwaway_database("counts_test_shared_attached") as attached_url:
        assert upgrade(own_url, OwnSource())[-1] == "0999_devices"
        assert upgrade(attached_url)[-1] == "0999_devices"
        assert {"public.devices"} <= relations(own_url)
        assert {"counts.devices"} <= relations(attached_url)
        assert "public.devices" not in relations(attached_url)
        for url, schema in ((own_url, "public"), (attached_url, SCHEMA)):
            columns = query(url, "SELECT table_schema FROM information_schema.columns"
                                 " WHERE table_name = 'marker_outbox' AND column_name = 'alert'")
            assert columns == [(schema,)]


def test_the_shared_push_function_is_pinned_to_its_modes_schema_then_pg_temp():
    """0004_push_function.sql is written once: SET search_path FROM CURRENT pins, on the function,
    the path the migration ran with, so it finds that mode's tables and never a temporary one."""
    with throwaway_database("counts_test_pin_own") as own_url, \
            throwaway_database("counts_test_pin_attached") as attached_url:
        upgrade(own_url, OwnSource())
        upgrade(attached_url)
        for url, schema in ((own_url, "public"), (attached_url, SCHEMA)):
            assert query(url, """
                SELECT n.nspname, p.proconfig, p.prosecdef,
                       has_function_privilege('public', p.oid, 'EXECUTE')
                FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                WHERE p.proname = 'push'""") == [(schema, [f"search_path={schema}, pg_temp"], True, False)]


def test_shared_migration_numbers_never_reuse_a_modes_numbers():
    """A shared file takes the next number after every file of all three directories."""
    def numbers(directory: Path) -> set[str]:
        return {re.match(r"\d+", f.name).group() for f in directory.glob("*.sql")}

    shared = numbers(PACKAGE)
    for track in ("own", "attached"):
        assert not shared & numbers(PACKAGE / track), track
        versions = [version for version, _ in migrations.available(track)]
        assert versions == sorted(versions) and len(versions) == len(set(versions))
