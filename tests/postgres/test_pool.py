"""counts.postgres.pool: the connections it opens search our schema first, named as an identifier."""

import psycopg2

from counts.postgres.pool import Database


def test_a_schema_is_searched_first_as_an_identifier_not_as_text(database_url):
    """The schema goes into search_path through quote_ident, as the migrations put it there: a
    name with capitals or spaces is that schema, never folded or split."""
    schema = 'Counts "Test"'
    conn = psycopg2.connect(database_url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute('CREATE SCHEMA IF NOT EXISTS "Counts ""Test"""')
            cur.execute('CREATE TABLE IF NOT EXISTS "Counts ""Test""".probe (n int)')
            cur.execute('INSERT INTO "Counts ""Test""".probe VALUES (7)')
        db = Database(database_url, timeout=5, pool_size=1, schema=schema)
        try:
            assert db.read(lambda cur: cur.execute("SELECT n FROM probe") or cur.fetchone()) == (7,)
        finally:
            db.close()
    finally:
        with conn.cursor() as cur:
            cur.execute('DROP SCHEMA "Counts ""Test""" CASCADE')
        conn.close()
