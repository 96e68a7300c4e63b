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


# Each listed conversation of a user, counted the slow, obvious way: every message after the read
# position that is not deleted, and those of them that name the user or mention everyone (and are
# not the user's own).
TRUE_ENTRIES = """
SELECT m.conversation_id::text,
       count(msg.seq) AS unread,
       count(msg.seq) FILTER (WHERE EXISTS (
           SELECT 1 FROM message_mentions x WHERE x.user_id = m.user_id
             AND x.conversation_id = msg.conversation_id AND x.seq = msg.seq)
           OR (msg.mentions_all AND msg.sender_id <> m.user_id)) AS mentions,
       m.notify, m.marked_unread, c.parent_id::text
FROM conversation_members m
JOIN conversations c ON c.id = m.conversation_id
LEFT JOIN messages msg ON msg.conversation_id = m.conversation_id
                      AND msg.seq > m.last_read_seq AND msg.deleted_at IS NULL
WHERE m.user_id = %s
GROUP BY m.conversation_id, m.notify, m.marked_unread, c.parent_id
HAVING count(msg.seq) > 0 OR m.marked_unread
ORDER BY 1
"""


def true_counts(pg_conn, user_id, policy: str = "messages") -> dict:
    """A user's body (without user_id) recounted from the tables, its totals spelled out from
    the issue's rules rather than taken from the service's code."""
    with pg_conn.cursor() as cur:
        cur.execute(TRUE_ENTRIES, (str(user_id),))
        entries = [{"conversation_id": cid, "unread": unread, "mentions": mentions,
                    "notify": notify, "marked_unread": marked, "parent_id": parent}
                   for cid, unread, mentions, notify, marked, parent in cur.fetchall()]
        cur.execute("SELECT badge_policy FROM user_settings WHERE user_id = %s", (str(user_id),))
        chosen = cur.fetchone()
    policy = chosen[0] if chosen and chosen[0] else policy
    top = [e for e in entries if e["parent_id"] is None and e["notify"] == "all"]
    heard = [e for e in entries if e["notify"] != "none"]
    threads = [e for e in heard if e["parent_id"] is not None]
    adds = [0 if e["notify"] == "none" else max(
        e["unread"] if e["notify"] == "all" else e["mentions"], int(e["marked_unread"]))
        for e in entries]
    badge = {"messages": sum(adds), "conversations": sum(1 for a in adds if a > 0),
             "mentions": sum(e["mentions"] for e in heard), "none": 0}[policy]
    return {"total": sum(e["unread"] for e in top),
            "unread_conversations": sum(1 for e in top if e["unread"] > 0 or e["marked_unread"]),
            "mentions": sum(e["mentions"] for e in heard), "badge": badge,
            "threads": {"unread": sum(e["unread"] for e in threads),
                        "unread_threads": sum(1 for e in threads if e["unread"] > 0),
                        "mentions": sum(e["mentions"] for e in threads)},
            "conversations": entries}
