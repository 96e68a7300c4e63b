"""The fault matrix in attached mode: the app's writers speak only SQL (as PostgREST does, under
row-level security) while the relay is cut off and restarted and Redis is cut, under traffic.

The verdict is the fault matrix's own (tests/faults/verdict.py): every device ends showing what
the app's function says, and no acknowledged write is lost.
"""

import threading
import time

import psycopg2
import pytest

from counts.bumps.relay import APPLICATION_NAME
from tests.faults.traffic import Traffic
from tests.faults.verdict import Outcome
from tests.faults.world import World, world_of
from tests.support.proxy import redis_url_through
from tests.support.services import wait_until
from tests.support.supabase_chat import RELAY_BOUND, Chat, Writer, attached_env


def build_sql_world(chat: Chat, busy_users: int = 6, quiet_users: int = 4) -> World:
    """tests.faults.world's world, its conversations created by their users in SQL."""
    writer = chat.writer()
    try:
        return world_of(lambda group: writer.create_conversation(group[0], group[1:]),
                        busy_users, quiet_users)
    finally:
        writer.close()


class SqlTraffic(Traffic):
    """The fault matrix's traffic, its writers the app's: plain SQL, one session per writer."""

    def __init__(self, url: str, world: World, chat: Chat, **kwargs):
        self.chat = chat
        self.sessions = threading.local()
        self.writers: list[Writer] = []
        super().__init__(url, world, **kwargs)

    def writer(self) -> Writer:
        """This writer thread's session."""
        if getattr(self.sessions, "writer", None) is None:
            self.sessions.writer = self.chat.writer()
            with self.lock:
                self.writers.append(self.sessions.writer)
        return self.sessions.writer

    def stop(self) -> None:
        """Stop the traffic and close the writers' sessions."""
        super().stop()
        for session in self.writers:
            session.close()

    def write(self, kind: str, writer: str, statement):
        """Run one SQL write, recorded as the HTTP writes are; (outcome, what it returned)."""
        outcome = Outcome(writer, None, kind, self.phase, time.monotonic(),
                          dropped_ok=self.dropped_ok, unavailable_ok=self.unavailable_ok)
        result = None
        try:
            result = statement(self.writer())
            outcome.status = 201 if kind == "send" else 200
        except psycopg2.Error as error:
            outcome.error, outcome.detail = "sql", str(error).strip()[:200]
        outcome.ended = time.monotonic()
        with self.lock:
            self.outcomes.append(outcome)
            if outcome.status is not None:
                self.tally[kind] += 1
        return outcome, result

    def send(self, http, writer: str, conversation: str, sender: str) -> Outcome:
        """INSERT a message as `sender`; remember it once committed."""
        outcome, message = self.write("send", writer, lambda w: w.send(conversation, sender, "fault"))
        if message is not None:
            with self.lock:
                self.acked_messages[message] = conversation
                self.tally["acked"] += 1
                self.tally["acked", conversation] += 1
        return outcome

    def mark_read(self, http, writer: str, conversation: str, user: str) -> Outcome:
        """UPDATE `user`'s read receipt; remember it once committed."""
        outcome, read_at = self.write("read", writer, lambda w: w.read(conversation, user))
        if read_at is not None:
            with self.lock:
                self.acked_reads.append((conversation, user, read_at))
                self.tally["acked"] += 1
        return outcome

    model_writes = False  # the app's SQL writes messages and receipts here, nothing else

    @staticmethod
    def summary(counts: dict) -> object:
        """The total: all this traffic's SQL writes change."""
        return counts["total"]

    def truth(self, pg, user: str) -> int:
        """What the app's function says: what counts must end up serving."""
        with pg.cursor() as cur:
            cur.execute("SELECT coalesce(sum(unread), 0)::int FROM public.counts_unread(%s::uuid[])",
                        ([user],))
            return cur.fetchone()[0]

    def lost_writes(self, pg) -> list[str]:
        """Committed messages missing, read receipts behind what was committed."""
        with pg.cursor() as cur:
            cur.execute("SELECT id::text FROM public.messages WHERE id = ANY(%s::uuid[])",
                        (list(self.acked_messages),))
            stored = {row[0] for row in cur.fetchall()}
            cur.execute("SELECT conversation_id::text, user_id::text, last_read_at FROM public.participants")
            read_at = {(c, u): at for c, u, at in cur.fetchall()}
        lost = [f"message {m} in {c}" for m, c in self.acked_messages.items() if m not in stored]
        lost += [f"read of {c} by {u} at {at} (now {read_at.get((c, u))})"
                 for c, u, at in self.acked_reads
                 if read_at.get((c, u)) is None or read_at[(c, u)] < at]
        return lost

    def inconsistencies(self, pg) -> list[str]:
        """Nothing to check beyond the app's own constraints."""
        return []


@pytest.fixture
def chat_pg(chat):
    """The verdict's connection to the example's database (counts' outbox first on the path)."""
    with chat.admin() as conn:
        yield conn


def relays_listening(chat: Chat, exclude: set[int]) -> int:
    """How many relay LISTEN connections the database has, other than `exclude`."""
    with chat.admin() as conn, conn.cursor() as cur:
        cur.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s"
                    " AND datname = current_database()", (APPLICATION_NAME,))
        return len({row[0] for row in cur.fetchall()} - exclude)


def terminate_relays(chat: Chat) -> set[int]:
    """Cut every relay's LISTEN connection, as a Postgres restart or failover would."""
    with chat.admin() as conn, conn.cursor() as cur:
        cur.execute("SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = %s AND datname = current_database()", (APPLICATION_NAME,))
        return {row[0] for row in cur.fetchall()}


def test_sql_writers_through_relay_restarts_and_a_redis_cut_leave_no_client_stale(
        chat, chat_pg, start_service, redis_proxy):
    env = {name: value for name, value in attached_env(chat).items()
           if name not in ("DATABASE_URL", "REDIS_URL")}
    # A slow drainer: the relays have to carry the bumps through the faults.
    service = start_service(redis_url_through(redis_proxy), chat.url,
                            **{**env, "COUNTS_OUTBOX_DRAIN_INTERVAL": "3"})
    wait_until(lambda: relays_listening(chat, set()) >= 2, timeout=RELAY_BOUND, what="two relays")
    world = build_sql_world(chat)
    with SqlTraffic(service.url, world, chat, retry_dropped=True, unavailable_ok=False) as traffic:
        traffic.advance(polls=100, acked=20)
        traffic.snapshot_idle()
        with traffic.fault("every relay's LISTEN connection terminated"):
            gone = terminate_relays(chat)
            wait_until(lambda: relays_listening(chat, gone) == 2, timeout=RELAY_BOUND,
                       what="the relays to reconnect")
        traffic.advance(polls=60, acked=15, every_conversation=True)
        for victim in sorted(service.worker_pids()):
            with traffic.fault("worker SIGKILLed, its relay with it"):
                service.replace_worker(victim)
            traffic.advance(polls=60, acked=15, every_conversation=True)
        with traffic.fault("Redis unreachable"):
            redis_proxy.set_mode("cut")
            traffic.advance(polls=30, acked=30, every_conversation=True)
            traffic.quiesce()  # the relays woke and could not bump: the rows wait...
            traffic.write_to(world.busy)  # ...and quiet users get no later write of their own
            redis_proxy.set_mode("forward")
        traffic.advance(polls=100, acked=20)
    traffic.finish(chat_pg, "attached: SQL writers, relays cut and killed, Redis cut").check()
