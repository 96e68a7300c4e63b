"""Postgres connections for the benchmark's own use: seeding, statistics, timing statements."""

import io
from collections.abc import Iterable, Sequence

import psycopg2
import psycopg2.extensions

import counts.postgres.pool  # noqa: F401 - imported first, so that the next line undoes what it installs

# Importing `counts` installs a process-wide psycopg2 wait callback with a 5 s deadline (the
# service's socket timeout). Seeding 10M rows takes longer than that in one statement, and the
# bench times statements the plain way, so its own connections go without it.
psycopg2.extensions.set_wait_callback(None)


def connect(url: str, autocommit: bool = True):
    """A plain psycopg2 connection (application_name 'bench')."""
    conn = psycopg2.connect(url, application_name="bench")
    conn.autocommit = autocommit
    return conn


def admin(url: str, *statements: str) -> None:
    """Run statements one by one in autocommit mode (CREATE/DROP DATABASE, VACUUM)."""
    conn = connect(url)
    with conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)
    conn.close()


def recreate_database(admin_url: str, name: str) -> None:
    """Drop and create a database of the bench's own on the private server."""
    admin(admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", f"CREATE DATABASE {name}")
    admin(database_url(admin_url, name), "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")


def database_url(url: str, name: str) -> str:
    """The same server's URL, naming another database."""
    return url.rsplit("/", 1)[0] + "/" + name


def copy_rows(cur, table: str, columns: Sequence[str], rows: Iterable[Sequence]) -> int:
    """COPY rows (tab-separated, values without tabs or newlines) into table; how many."""
    buffer = io.StringIO()
    count = 0
    for row in rows:
        buffer.write("\t".join(str(value) for value in row))
        buffer.write("\n")
        count += 1
    buffer.seek(0)
    cur.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN", buffer)
    return count


STATEMENTS = """
SELECT s.query, s.calls, s.total_exec_time FROM pg_stat_statements s
JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = current_database()
"""


def statement_stats(cur) -> list[tuple[str, int, float]]:
    """(query, calls, total ms) of every statement pg_stat_statements saw in this database."""
    cur.execute(STATEMENTS)
    return [(query, calls, total) for query, calls, total in cur.fetchall()]


KINDS = ("unread", "drainer", "outbox", "writes", "transaction", "bench")


def classify(query: str) -> str:
    """Who sent a statement: the unread-count read, the outbox drainer's claim, an outbox insert or
    delete (writes and drainer), another write, BEGIN/COMMIT/ROLLBACK, or the bench itself."""
    if "AS unread" in query:
        # A write's look at one membership before and after it (queries.reads.MEMBER_ENTRY) is
        # part of the write, not a poll's read.
        return "writes" if "m.conversation_id = $" in query else "unread"
    if "marker_outbox" in query:
        return "drainer" if "SKIP LOCKED" in query else "outbox"
    if "pg_stat" in query:
        return "bench"
    if query.strip().upper() in ("BEGIN", "COMMIT", "ROLLBACK"):
        return "transaction"
    return "writes"


def calls_by_kind(cur) -> dict[str, int]:
    """Statement calls since the last reset, by classify()."""
    kinds = dict.fromkeys(KINDS, 0)
    for query, calls, _ in statement_stats(cur):
        kinds[classify(query)] += calls
    return kinds


def reset_statements(cur) -> None:
    """Zero pg_stat_statements."""
    cur.execute("SELECT pg_stat_statements_reset()")
