"""Postgres connections: the only code that opens, lends and closes them."""

import logging
import os
import select
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import psycopg2.extras
from psycopg2.extensions import POLL_OK, POLL_READ, POLL_WRITE

from counts.errors import DependencyUnavailable
from counts.observability import metrics
from counts.postgres.queries import reads, session

log = logging.getLogger(__name__)

T = TypeVar("T")

# psycopg2 has no socket timeout: a server (or proxy) that accepts and never answers would hold a
# worker forever. A wait callback makes every libpq wait a select() we can bound. It is global to
# the process, so the bound travels with the connection (see Database): connections that are not
# ours (a test's, another library's) wait as long as psycopg2 always would.


class PostgresTimeout(psycopg2.OperationalError):
    """Postgres did not answer within the connection's timeout (a silent server, not a dead one)."""


def _wait_with_deadline(conn) -> None:
    """psycopg2 wait callback: like psycopg2.extras.wait_select, but gives up at a deadline."""
    timeout = getattr(conn, "timeout", None) or float("inf")
    deadline = time.monotonic() + timeout
    while True:
        state = conn.poll()
        if state == POLL_OK:
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise PostgresTimeout(f"no answer from Postgres within {timeout}s")
        if state == POLL_READ:
            ready = select.select([conn.fileno()], [], [], min(remaining, 3600))[0]
        elif state == POLL_WRITE:
            ready = select.select([], [conn.fileno()], [], min(remaining, 3600))[1]
        else:
            raise psycopg2.OperationalError(f"bad poll state {state}")
        if not ready and deadline - time.monotonic() <= 0:
            raise PostgresTimeout(f"no answer from Postgres within {timeout}s")


psycopg2.extensions.set_wait_callback(_wait_with_deadline)
# uuid and uuid[] columns come back as uuid.UUID, and UUIDs go in as parameters.
psycopg2.extras.register_uuid()


class StaleConnection(DependencyUnavailable):
    """A pooled connection failed: the server may have restarted, and a new one may work."""


class QueryStats:
    """Per-process count of statements sent, so tests and metrics can see the 304 path sends none."""

    def __init__(self) -> None:
        self.queries = 0
        self.seconds = 0.0
        self._lock = threading.Lock()

    def record(self, seconds: float) -> None:
        """Add one statement that took `seconds` (here and in the Prometheus metrics)."""
        with self._lock:
            self.queries += 1
            self.seconds += seconds
        metrics.PG_QUERIES.inc()
        metrics.PG_QUERY_SECONDS.observe(seconds)


stats = QueryStats()


class CountingCursor(psycopg2.extensions.cursor):
    """A cursor that records every statement it sends in `stats`."""

    def execute(self, query, vars=None):  # noqa: A002 - psycopg2's own signature
        started = time.perf_counter()
        try:
            return super().execute(query, vars)
        finally:
            stats.record(time.perf_counter() - started)


class Database:
    """A lazily created, per-process, bounded pool of Postgres connections with timeouts."""

    def __init__(self, url: str, timeout: float, pool_size: int, schema: str | None = None,
                 application_name: str = "counts"):
        self.url = url
        self.application_name = application_name  # what pg_stat_activity shows for the pool's sessions
        self.timeout = timeout
        self.pool_size = pool_size
        self.schema = schema  # searched first, ahead of the session's default (attached: counts)
        self._idle: list = []
        self._pid: int | None = None
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(pool_size)
        # When a connection last answered, and when one last failed (monotonic): what readiness
        # reads before it spends a query of its own.
        self.answered_at = self.failed_at = -float("inf")
        # Read by the wait callback, during connect too, hence a class attribute, not set after.
        self._connection_class = type("TimedConnection", (psycopg2.extensions.connection,),
                                      {"timeout": timeout})

    def _connect(self, application_name: str = "counts"):
        """Open one connection with server- and client-side timeouts, searching our schema first."""
        conn = psycopg2.connect(
            self.url,
            connect_timeout=max(1, round(self.timeout)),
            application_name=application_name,
            # The server cancels a runaway statement; the wait callback covers a silent server.
            options=f"-c statement_timeout={int(self.timeout * 1000)}",
            cursor_factory=CountingCursor,
            connection_factory=self._connection_class,
            keepalives=1, keepalives_idle=10, keepalives_interval=5, keepalives_count=2,
        )
        if self.schema is not None:
            try:
                with conn.cursor() as cur:
                    session.prepend_search_path(cur, self.schema)
                conn.commit()
            except BaseException:
                conn.close()
                raise
        return conn

    def dedicated(self, application_name: str):
        """A connection of its own in autocommit, outside the pool and its slots (a LISTEN: it
        must never be lent to a request); the caller closes it."""
        conn = self._connect(application_name)
        conn.autocommit = True
        return conn

    def _take(self):
        """Borrow an idle connection (reused=True) or open one; pools never cross a fork."""
        with self._lock:
            if self._pid != os.getpid():
                self._idle = []  # inherited sockets belong to the parent
                self._pid = os.getpid()
            if self._idle:
                return self._idle.pop(), True
        return self._connect(self.application_name), False

    def _give_back(self, conn, broken: bool) -> None:
        """Return a healthy connection to the pool; close a broken one."""
        if broken or conn.closed:
            self.discard_idle()
            conn.close()
            return
        with self._lock:
            if self._pid == os.getpid():
                self._idle.append(conn)
                return
        conn.close()

    def discard_idle(self) -> None:
        """Close idle connections: after one failed, the others likely point at a dead server."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    @contextmanager
    def connection(self, autocommit: bool = False) -> Iterator:
        """Lend a connection; anything that fails to reach Postgres becomes a 503."""
        if not self._slots.acquire(timeout=self.timeout):
            raise DependencyUnavailable("All Postgres connections are busy; try again.")
        conn = None
        reused = broken = False
        try:
            try:
                conn, reused = self._take()
                conn.autocommit = autocommit
                yield conn
                if not autocommit:
                    conn.commit()
                self.answered_at = time.monotonic()
                metrics.dependency_state("postgres", available=True)
            except (psycopg2.OperationalError, psycopg2.InterfaceError) as error:
                broken = not isinstance(error, psycopg2.errors.TransactionRollbackError)
                if conn is not None and not conn.closed:
                    try:
                        conn.rollback()
                    except psycopg2.Error:
                        broken = True
                if broken:
                    self.failed_at = time.monotonic()
                    log.warning("postgres unavailable: %s", str(error).strip())
                    metrics.dependency_state("postgres", available=False)
                    # A reused connection that failed at once may just be stale (server restarted):
                    # worth one retry. One that timed out means a silent server: retrying would
                    # make the request wait twice the timeout.
                    stale = reused and not isinstance(error, PostgresTimeout)
                    failure = StaleConnection if stale else DependencyUnavailable
                    raise failure("The database is unavailable; try again.") from error
                raise
            except BaseException:
                if conn is not None and not conn.closed:
                    conn.rollback()
                raise
        finally:
            if conn is not None:
                self._give_back(conn, broken)
            self._slots.release()

    def run(self, work: Callable[..., T], *args, attempts: int = 3) -> T:
        """Run `work(cursor, *args)` in one transaction, retrying deadlocks and serialization failures."""
        for attempt in range(1, attempts + 1):
            try:
                with self.connection() as conn, conn.cursor() as cur:
                    return work(cur, *args)
            except psycopg2.errors.TransactionRollbackError:
                if attempt == attempts:
                    raise DependencyUnavailable("The database is busy; try again.") from None
        raise AssertionError("unreachable")

    def read(self, work: Callable[..., T], *args) -> T:
        """Run a read-only `work(cursor, *args)`, retrying once on a connection the server dropped."""
        try:
            with self.connection(autocommit=True) as conn, conn.cursor() as cur:
                return work(cur, *args)
        except StaleConnection:
            # A pooled connection may have died with a Postgres restart; a fresh one may work.
            with self.connection(autocommit=True) as conn, conn.cursor() as cur:
                return work(cur, *args)

    def answers(self, fresh_for: float = 1.0) -> bool:
        """Whether the server answers: yes without a query when a connection of this process
        answered in the last `fresh_for` seconds and none failed since; else one ping."""
        if self.failed_at < self.answered_at > time.monotonic() - fresh_for:
            return True
        try:
            self.read(reads.ping)
        except DependencyUnavailable:
            return False
        return True

    def close(self) -> None:
        """Close every idle connection (on shutdown)."""
        self.discard_idle()
