"""counts.postgres.migrations: the shipped files, upgrading an empty database, and concurrent upgrades."""

import threading

import pytest

from counts.postgres import migrations
from counts.postgres.pool import Database
from counts.postgres.queries import migrations as migration_sql
from tests.support.postgres import query, throwaway_database

TABLES = {"conversations", "conversation_members", "messages", "message_mentions", "user_settings",
          "marker_outbox", "schema_migrations",
          "push_devices", "push_jobs", "push_leases", "push_tickets"}


def tables(url: str) -> set[str]:
    return {row[0] for row in query(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def recorded(url: str) -> list[str]:
    return [row[0] for row in query(url, "SELECT version FROM schema_migrations ORDER BY version")]


@pytest.fixture
def fresh_url():
    with throwaway_database("counts_test_migrations") as url:
        yield url


def test_available_lists_the_initial_migration_in_order():
    versions = [version for version, _ in migrations.available()]
    assert versions[0] == "0001_initial"
    assert versions == sorted(versions)
    assert all(sql.strip() for _, sql in migrations.available())
    assert "CREATE TABLE conversations" in dict(migrations.available())["0001_initial"]


def test_upgrade_of_an_empty_database_creates_the_tables(fresh_url):
    assert tables(fresh_url) == set()
    db = Database(fresh_url, timeout=10, pool_size=1)
    try:
        applied = migrations.upgrade(db)
    finally:
        db.close()
    assert applied == [version for version, _ in migrations.available()]
    assert tables(fresh_url) == TABLES
    assert recorded(fresh_url) == applied


def test_upgrade_from_0001_records_each_conversations_last_deleted_seq(fresh_url):
    db = Database(fresh_url, timeout=10, pool_size=1)
    try:
        initial = dict(migrations.available())["0001_initial"]
        db.run(lambda cur: (migration_sql.applied_migrations(cur),
                            migration_sql.apply_migration(cur, "0001_initial", initial)))
        db.run(lambda cur: cur.execute("""
            INSERT INTO conversations (id, last_seq) VALUES
                ('00000000-0000-4000-8000-000000000001', 3), ('00000000-0000-4000-8000-000000000002', 1);
            INSERT INTO messages (conversation_id, seq, id, sender_id, body, deleted_at)
            SELECT '00000000-0000-4000-8000-000000000001'::uuid, s, gen_random_uuid(), gen_random_uuid(), '',
                   CASE WHEN s < 3 THEN now() END FROM generate_series(1, 3) s
            UNION ALL
            SELECT '00000000-0000-4000-8000-000000000002'::uuid, 1, gen_random_uuid(), gen_random_uuid(),
                   '', NULL
            """))
        assert migrations.upgrade(db)[0] == "0002_last_deleted_seq"
    finally:
        db.close()
    assert query(fresh_url, "SELECT id::text, last_deleted_seq FROM conversations ORDER BY id") == [
        ("00000000-0000-4000-8000-000000000001", 2), ("00000000-0000-4000-8000-000000000002", 0)]


def test_second_upgrade_applies_nothing(fresh_url):
    db = Database(fresh_url, timeout=10, pool_size=1)
    try:
        first = migrations.upgrade(db)
        assert migrations.upgrade(db) == []
    finally:
        db.close()
    assert recorded(fresh_url) == first


def test_concurrent_upgrades_apply_each_migration_exactly_once(fresh_url):
    start = threading.Barrier(2)
    applied: list[list[str]] = []
    errors: list[BaseException] = []

    def upgrade():
        db = Database(fresh_url, timeout=10, pool_size=1)
        try:
            start.wait()
            applied.append(migrations.upgrade(db))
        except Exception as error:
            errors.append(error)
        finally:
            db.close()

    threads = [threading.Thread(target=upgrade) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == [], f"a concurrent upgrade failed: {errors!r}"
    everything = [version for version, _ in migrations.available()]
    assert sorted(v for versions in applied for v in versions) == everything
    assert recorded(fresh_url) == everything
    assert tables(fresh_url) == TABLES


def test_upgrade_to_0009_flags_exactly_the_members_behind_their_conversation(fresh_url):
    db = Database(fresh_url, timeout=10, pool_size=1)
    before = [(v, sql) for v, sql in migrations.available() if v < "0009"]

    def apply_before(cur):
        migration_sql.applied_migrations(cur)
        for version, sql in before:
            migration_sql.apply_migration(cur, version, sql)

    try:
        db.run(apply_before)
        db.run(lambda cur: cur.execute("""
            INSERT INTO conversations (id, last_seq) VALUES
                ('00000000-0000-4000-8000-000000000001', 3), ('00000000-0000-4000-8000-000000000002', 0);
            INSERT INTO conversation_members (conversation_id, user_id, last_read_seq) VALUES
                ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-00000000000a', 3),
                ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-00000000000b', 1),
                ('00000000-0000-4000-8000-000000000002', '00000000-0000-4000-8000-00000000000a', 0)
            """))
        assert migrations.upgrade(db)[0] == "0009_may_have_unread"
    finally:
        db.close()
    assert query(fresh_url, """
        SELECT conversation_id::text, user_id::text, may_have_unread FROM conversation_members
        ORDER BY 1, 2""") == [
        ("00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-00000000000a", False),
        ("00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-00000000000b", True),
        ("00000000-0000-4000-8000-000000000002", "00000000-0000-4000-8000-00000000000a", False)]
    indexes = {row[0] for row in query(
        fresh_url, "SELECT indexname FROM pg_indexes WHERE tablename = 'conversation_members'")}
    assert "conversation_members_unread_by_user" in indexes
    assert "conversation_members_by_user" not in indexes
