"""The tests' Postgres: databases made and dropped, URLs reaching it through a proxy, one-off
queries, notifications, and a user's unread total counted the obvious way (the truth)."""

import select
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg2

from tests.support.environment import ADMIN_URL

TRUTH = """
SELECT coalesce(sum(n), 0)::int FROM (
    SELECT count(msg.seq) AS n
    FROM conversation_members m
    JOIN messages msg ON msg.conversation_id = m.conversation_id
                     AND msg.seq > m.last_read_seq AND msg.deleted_at IS NULL
    WHERE m.user_id = %s
    GROUP BY m.conversation_id
) per_conversation
"""


def with_database(url: str, name: str) -> str:
    """The same server URL, naming another database."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def administer(statement: str) -> None:
    """Run one statement on the test server's admin database (CREATE or DROP DATABASE)."""
    conn = psycopg2.connect(ADMIN_URL)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


@contextmanager
def throwaway_database(name: str):
    """A brand-new empty database on the test server, dropped afterwards; yields its URL."""
    administer(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    administer(f"CREATE DATABASE {name}")
    try:
        yield with_database(ADMIN_URL, name)
    finally:
        administer(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def proxied_url(database_url: str, proxy) -> str:
    """The database URL, reaching Postgres through `proxy` (a proxy.TcpProxy)."""
    parts = urlsplit(database_url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


def query(url: str, statement: str) -> list[tuple]:
    """Rows of one statement on the database at `url`."""
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
            return cur.fetchall()
    finally:
        conn.close()


def notifications(conn, wait: float) -> int:
    """Notifications `conn` (LISTENing) received within `wait` seconds of the first (or of now,
    if none came); forgotten once counted."""
    if select.select([conn], [], [], wait)[0]:
        conn.poll()
    count = len(conn.notifies)
    conn.notifies.clear()
    return count


def true_total(pg_conn, user_id) -> int:
    """A user's unread total counted the slow, obvious way (independent of the service's query)."""
    with pg_conn.cursor() as cur:
        cur.execute(TRUTH, (str(user_id),))
        return cur.fetchone()[0]
