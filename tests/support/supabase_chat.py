"""examples/supabase-chat on a database of the tests' own, written to as PostgREST writes, and
the environment of the service attached to it.

Roles are global to the Postgres cluster, and other test runs may share it: the example's role
names (anon, authenticated, service_role, authenticator) get a suffix of this run's own, in
every file, and are dropped afterwards.
"""

import json
import re
import uuid
from contextlib import contextmanager
from pathlib import Path

import psycopg2
from psycopg2 import sql

from counts.postgres import migrations
from counts.postgres.pool import Database
from tests.support.environment import ADMIN_URL, COMMON, REDIS_URL
from tests.support.postgres import throwaway_database

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "supabase-chat"
FILES = ("local-supabase.sql", "schema.sql", "triggers.sql", "grants.sql")
ROLES = ("anon", "authenticated", "service_role", "authenticator")
UNREAD_FUNCTION = "public.counts_unread"
# How long a test waits for the relay to move a marker. The relay takes milliseconds (see
# bench/relay.py); this only bounds a test on a loaded machine.
RELAY_BOUND = 10.0


def example_sql(name: str, suffix: str) -> str:
    """One of the example's files, its role names made this run's own."""
    text = (EXAMPLE / name).read_text()
    return re.sub(r"\b(" + "|".join(ROLES) + r")\b", rf"\1_{suffix}", text)


class Chat:
    """The example's database: roles of this run's own, and writes as PostgREST sends them."""

    def __init__(self, url: str, suffix: str):
        self.url, self.suffix = url, suffix  # url: as the owner (postgres), as counts connects
        self.roles = {role: f"{role}_{suffix}" for role in ROLES}
        self.writer_url = re.sub(r"//[^@/]*@", f"//{self.roles['authenticator']}@", url)

    def load(self) -> None:
        """Run the example's files in order, as the owner (postgres on Supabase)."""
        with self.admin() as conn, conn.cursor() as cur:
            for name in FILES:
                cur.execute(example_sql(name, self.suffix))

    @contextmanager
    def admin(self):
        """An autocommit connection as the owner, searching counts first (as counts does)."""
        conn = psycopg2.connect(self.url, options="-c search_path=counts,public")
        conn.autocommit = True
        try:
            yield conn
        finally:
            conn.close()

    @contextmanager
    def listening(self, channel: str):
        """An autocommit connection as the owner, LISTENing on `channel`."""
        with self.admin() as conn:
            with conn.cursor() as cur:
                cur.execute(f"LISTEN {channel}")
            yield conn

    def writer(self) -> "Writer":
        """A new PostgREST-like session (one per thread)."""
        return Writer(self.writer_url, self.roles)

    def queued_for(self, users) -> int:
        """Outbox rows that still wait to bump any of these users."""
        with self.admin() as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM counts.marker_outbox WHERE user_ids && %s::uuid[]",
                        ([str(user) for user in users],))
            return cur.fetchone()[0]

    def add_device(self, user, held_for: float | None = None) -> None:
        """Register a device for `user` straight in counts.push_devices (nothing is pushed to it:
        no dispatcher runs beside the SQL-level tests); in its coalescing window for `held_for`
        more seconds, if given."""
        with self.admin() as conn, conn.cursor() as cur:
            cur.execute("INSERT INTO counts.push_devices (id, user_id, platform, token, hold_until)"
                        " VALUES (gen_random_uuid(), %s, 'fcm', gen_random_uuid()::text,"
                        " coalesce(now() + make_interval(secs => %s), '-infinity'))",
                        (str(user), held_for))

    def push_jobs(self, users) -> list[tuple[str, bool, str | None]]:
        """(user, alert, conversation) of the push jobs queued for any of these users, in order."""
        with self.admin() as conn, conn.cursor() as cur:
            cur.execute("SELECT user_id::text, alert, conversation_id::text FROM counts.push_jobs"
                        " WHERE user_id = ANY(%s::uuid[]) ORDER BY id", ([str(u) for u in users],))
            return cur.fetchall()

    def unread_total(self, user) -> int:
        """The user's total by the app's function (what counts serves), asked as the owner."""
        with self.admin() as conn, conn.cursor() as cur:
            cur.execute("SELECT coalesce(sum(unread), 0)::int FROM public.counts_unread(%s::uuid[])",
                        ([str(user)],))
            return cur.fetchone()[0]


class Writer:
    """One PostgREST-like connection: log in as authenticator, then per transaction SET LOCAL
    ROLE and the JWT claims (auth.uid() reads them), as PostgREST does for each request."""

    def __init__(self, url: str, roles: dict[str, str]):
        self.conn = psycopg2.connect(url)
        self.roles = roles

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    @contextmanager
    def transaction(self, user=None, role: str = "authenticated"):
        """A cursor in one transaction as `user` (committed at the end, rolled back on error)."""
        with self.conn, self.conn.cursor() as cur:
            cur.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(self.roles[role])))
            claims = {"role": self.roles[role], **({"sub": str(user)} if user else {})}
            cur.execute("SELECT set_config('request.jwt.claims', %s, true)", (json.dumps(claims),))
            yield cur

    def create_conversation(self, creator, others=()) -> str:
        """A conversation started by `creator`, who adds themselves and `others`."""
        with self.transaction(creator) as cur:
            cur.execute("INSERT INTO conversations (title) VALUES ('chat') RETURNING id::text")
            conversation = cur.fetchone()[0]
            cur.execute("INSERT INTO participants (conversation_id, user_id)"
                        " SELECT %s, unnest(%s::uuid[])",
                        (conversation, [str(creator), *map(str, others)]))
        return conversation

    def send(self, conversation, sender, body: str = "hello") -> str:
        """A message from `sender`; its id."""
        with self.transaction(sender) as cur:
            cur.execute("INSERT INTO messages (conversation_id, body) VALUES (%s, %s) RETURNING id::text",
                        (str(conversation), body))
            return cur.fetchone()[0]

    def read(self, conversation, user):
        """`user`'s read receipt, never moving back (devices race); the receipt now."""
        with self.transaction(user) as cur:
            cur.execute("UPDATE participants SET last_read_at = greatest(last_read_at, now())"
                        " WHERE conversation_id = %s AND user_id = auth.uid() RETURNING last_read_at",
                        (str(conversation),))
            return cur.fetchone()[0]

    def add(self, conversation, creator, user) -> None:
        """The creator adds `user` (a join)."""
        with self.transaction(creator) as cur:
            cur.execute("INSERT INTO participants (conversation_id, user_id) VALUES (%s, %s)",
                        (str(conversation), str(user)))

    def leave(self, conversation, user) -> None:
        """`user` leaves."""
        with self.transaction(user) as cur:
            cur.execute("DELETE FROM participants WHERE conversation_id = %s AND user_id = auth.uid()",
                        (str(conversation),))
            assert cur.rowcount == 1

    def delete_message(self, message, sender) -> None:
        """The sender deletes their message."""
        with self.transaction(sender) as cur:
            cur.execute("DELETE FROM messages WHERE id = %s", (str(message),))
            assert cur.rowcount == 1

    def delete_conversation(self, conversation, creator) -> None:
        """The creator deletes the conversation (participants and messages go by cascade)."""
        with self.transaction(creator) as cur:
            cur.execute("DELETE FROM conversations WHERE id = %s", (str(conversation),))
            assert cur.rowcount == 1


def as_role(cur, role: str) -> None:
    """Act as `role` for the rest of the transaction."""
    cur.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))


def drop_roles(admin_url: str, suffix: str) -> None:
    """Drop a run's roles (after the databases that used them are gone)."""
    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for role in reversed(ROLES):
                cur.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(f"{role}_{suffix}")))
    finally:
        conn.close()


def run_suffix() -> str:
    """A suffix no other run on the cluster has."""
    return uuid.uuid4().hex[:10]


@contextmanager
def example_database(name: str):
    """The example on a brand-new database `name`: counts' schema, then the app's files, with
    roles of a run of its own (dropped afterwards); yields its Chat."""
    suffix = run_suffix()
    try:
        with throwaway_database(name) as url:
            db = Database(url, timeout=10, pool_size=1, schema="counts")
            try:
                migrations.upgrade(db, "attached", "counts")
            finally:
                db.close()
            chat = Chat(url, suffix)
            chat.load()
            yield chat
    finally:
        drop_roles(ADMIN_URL, suffix)


def attached_env(chat: Chat, **extra: str) -> dict[str, str]:
    """The environment of the service under gunicorn in attached mode. No drainer: what moves a
    marker within RELAY_BOUND is the relay."""
    return {"DATABASE_URL": chat.url, "REDIS_URL": REDIS_URL, **COMMON,
            "COUNTS_SOURCE": "attached", "COUNTS_UNREAD_FUNCTION": UNREAD_FUNCTION,
            "COUNTS_POLL_INTERVAL": "7", "COUNTS_OUTBOX_DRAIN_INTERVAL": "0", **extra}


def attached_settings(chat: Chat) -> dict:
    """The environment of the app in attached mode on the example's database, in-process."""
    return attached_env(chat, COUNTS_PG_TIMEOUT="2")
