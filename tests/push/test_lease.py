"""A round leases its users and pushes with no transaction open (DESIGN.md invariant 12): no
session idle in a transaction while a provider answers, an operator's idle-in-transaction timeout
repeats nothing, a frozen dispatcher's jobs are pushed once its lease ends, and one user is never
pushed by two dispatchers at once."""

import concurrent.futures
import signal
import threading
import uuid
from collections import Counter
from urllib.parse import urlsplit, urlunsplit

import pytest
from psycopg2 import sql

from counts.postgres.pool import Database
from counts.push.dispatcher import Dispatcher
from counts.push.providers import ACCEPTED, Outcome
from tests.support.api import new_user
from tests.support.environment import settings_for
from tests.support.postgres import true_total
from tests.support.push import queue_empty, subscribe, worker_env
from tests.support.services import wait_until

IDLE_TIMEOUT = 0.25  # seconds: the operator's idle_in_transaction_session_timeout
DISPATCHER = "counts-push"  # the dispatcher's application_name, for operators reading pg_stat_activity


def open_transactions(pg) -> list[tuple]:
    """(application_name, state) of our sessions with a transaction open, the test's own aside."""
    with pg.cursor() as cur:
        cur.execute("SELECT application_name, state FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    " AND application_name LIKE 'counts%%' AND xact_start IS NOT NULL")
        return cur.fetchall()


def dispatcher_sessions(pg) -> int:
    with pg.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND application_name = %s", (DISPATCHER,))
        return cur.fetchone()[0]


def test_no_dispatcher_session_is_in_a_transaction_while_a_provider_answers(
        push_api, push_service, dispatchers, pg):
    alice, bob = new_user(), new_user()
    conversation = push_api.conversation(alice, bob)
    browser = subscribe(push_api, push_service, bob)
    release = push_service.trouble.hold()
    dispatchers(COUNTS_PUSH_TIMEOUT=10)  # the test, not the provider's timeout, ends the wait
    push_api.send(conversation, alice)
    wait_until(browser.received, what="the push to be in flight")
    assert open_transactions(pg) == []  # not idle in one, nor any other state
    assert dispatcher_sessions(pg) >= 1  # and the dispatcher's sessions say whose they are
    release.set()
    wait_until(lambda: queue_empty(pg), what="the round to record its push")
    assert [message["total"] for message in browser.messages()] == [1]


@pytest.fixture
def strict_role(pg, database_url):
    """A role for dispatchers with the operator's idle_in_transaction_session_timeout; its URL."""
    role = f"counts_push_{uuid.uuid4().hex[:10]}"
    with pg.cursor() as cur:
        cur.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        cur.execute(sql.SQL("ALTER ROLE {} SET idle_in_transaction_session_timeout = {}").format(
            sql.Identifier(role), sql.Literal(f"{int(IDLE_TIMEOUT * 1000)}ms")))
        for objects in ("TABLES", "SEQUENCES"):
            cur.execute(sql.SQL("GRANT ALL ON ALL {} IN SCHEMA public TO {}").format(
                sql.SQL(objects), sql.Identifier(role)))
    parts = urlsplit(database_url)
    yield role, urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port or 5432}"))
    with pg.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))
        cur.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        cur.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def timed_out_if_idle(pg, role: str) -> bool:
    """Every session of `role` has sat in its state for twice the timeout, none in a transaction:
    one that had been idle in one would have been ended by Postgres by now."""
    with pg.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s AND (xact_start IS NOT NULL"
                    " OR clock_timestamp() - state_change < %s * interval '1 second')",
                    (role, 2 * IDLE_TIMEOUT))
        return cur.fetchone()[0] == 0


def test_an_idle_in_transaction_timeout_repeats_no_push(push_api, push_service, strict_role,
                                                        dispatchers, pg):
    role, url = strict_role
    alice = new_user()
    users = [new_user() for _ in range(3)]
    browsers = [subscribe(push_api, push_service, user) for user in users]
    for user in users:
        push_api.send(push_api.conversation(alice, user), alice)
    release = push_service.trouble.hold()
    dispatchers(DATABASE_URL=url, COUNTS_PUSH_TIMEOUT=10)  # one round takes all three, and waits
    wait_until(lambda: all(browser.received() for browser in browsers), what="the pushes in flight")
    # The providers answer more slowly than the timeout allows a transaction to sit idle.
    wait_until(lambda: timed_out_if_idle(pg, role), what="the timeout to have had its chance")
    release.set()
    wait_until(lambda: queue_empty(pg) or any(len(b.received()) > 1 for b in browsers),
               what="the round to record its pushes")
    assert [len(browser.received()) for browser in browsers] == [1, 1, 1]
    assert queue_empty(pg)


def test_a_frozen_dispatchers_jobs_are_pushed_once_its_lease_has_ended(
        push_api, push_service, push_config, workers, pg):
    alice = new_user()
    users = [new_user() for _ in range(2)]
    browsers = [subscribe(push_api, push_service, user) for user in users]
    for user in users:
        push_api.send(push_api.conversation(alice, user), alice)
    release = push_service.trouble.hold()  # the pushes arrive; their answers wait
    frozen = workers(worker_env(push_config))
    wait_until(lambda: all(browser.received() for browser in browsers), what="the round in flight")
    # Stopped between its lease and its record, before its provider timeout (PUSH_TIMEOUT): a
    # pause, a partition, or a death; it never records (killed below, whatever the outcome).
    frozen.signal(signal.SIGSTOP)
    with pg.cursor() as cur:
        cur.execute("SELECT extract(epoch FROM max(until))::float8 FROM push_leases"
                    " WHERE user_id = ANY(%s::uuid[])", ([str(user) for user in users],))
        lease_end = cur.fetchone()[0]
    assert lease_end is not None and not queue_empty(pg)
    release.set()
    workers(worker_env(push_config))
    wait_until(lambda: queue_empty(pg), timeout=40,  # the lease: 4 push timeouts (8 s)
               what="the second worker to push the frozen round's jobs")
    frozen.signal(signal.SIGKILL)
    for user, browser in zip(users, browsers, strict=True):
        _frozen_rounds, second = browser.received()
        assert second.at >= lease_end  # not while the frozen round might still be sending
        assert browser.messages()[-1]["total"] == true_total(pg, user) == 1


class GatedProvider:
    """A provider whose sends wait until the test opens the gate, and which notes a send that
    began while another send to the same user was still going."""

    name = "fcm"

    def __init__(self):
        self.gate = threading.Event()
        self.sending: Counter = Counter()
        self.sent: list[tuple[uuid.UUID, int]] = []  # (user, total) of each send, as it began
        self.overlaps: list[uuid.UUID] = []
        self._lock = threading.Lock()

    def destination(self, device) -> str:
        return "gate.invalid"

    def send(self, device, push) -> Outcome:
        with self._lock:
            if self.sending[device.user_id]:
                self.overlaps.append(device.user_id)
            self.sending[device.user_id] += 1
            self.sent.append((device.user_id, push.total))
        try:
            self.gate.wait(30)  # bounded: a test that never opens it fails instead of hanging
        finally:
            with self._lock:
                self.sending[device.user_id] -= 1
        return Outcome(ACCEPTED)

    def close(self) -> None:
        pass


def add_device(pg, user) -> None:
    with pg.cursor() as cur:
        cur.execute("INSERT INTO push_devices (id, user_id, platform, token) VALUES (%s, %s, 'fcm', %s)",
                    (str(uuid.uuid4()), str(user), uuid.uuid4().hex))


def test_two_dispatchers_never_push_one_user_at_once_even_with_jobs_written_mid_round(
        push_config, push_api, strict_role, pg):
    role, url = strict_role
    provider = GatedProvider()
    settings = settings_for({**push_config, "COUNTS_PUSH_COALESCE": 0.05})
    first, second = (Dispatcher(Database(url, settings.postgres.timeout, 3), {"fcm": provider},
                                settings.push) for _ in range(2))
    alice, bob = new_user(), new_user()
    conversation = push_api.conversation(alice, bob)
    add_device(pg, bob)
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            push_api.send(conversation, alice)
            first_round = pool.submit(first.run_once)
            wait_until(lambda: provider.sent, what="the first round's send to bob")
            push_api.send(conversation, alice)  # a job written while bob's push is in flight
            # Whatever an operator's timeout does to a session sitting idle in a transaction...
            wait_until(lambda: timed_out_if_idle(pg, role), what="the timeout to have had its chance")
            second_round = pool.submit(second.run_once)
            wait_until(lambda: second_round.done() or provider.overlaps, what="the second round")
            assert provider.overlaps == []  # ...the second dispatcher leaves bob alone
            assert second_round.result() == 0
            provider.gate.set()
            assert first_round.result(timeout=20) == 1
        # The job written mid-round waits out bob's coalescing window, then either may take it.
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            def both_rounds() -> bool:
                list(pool.map(lambda dispatcher: dispatcher.run_once(), (first, second)))
                return queue_empty(pg)

            wait_until(both_rounds, what="the second push")
        assert provider.overlaps == []
        assert provider.sent == [(bob, 1), (bob, 2)]
        assert true_total(pg, bob) == 2
    finally:
        provider.gate.set()
        for dispatcher in (first, second):
            dispatcher.close()
            dispatcher.db.close()
