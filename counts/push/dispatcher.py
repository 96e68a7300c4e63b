"""The push dispatcher: its own process (`flask --app app push-worker`), as many as you like.

A round is two short transactions with the pushes between them, so no transaction stays open
while the providers answer. First it leases due users (push_leases: one dispatcher per user at a
time, even for jobs written after the lease) and reads their due jobs, and commits; then it reads
those users' counts *now* and pushes to every device; then, in the second transaction, it deletes
the jobs, queues retries, starts each pushed device's coalescing window, forgets gone devices and
ends its leases. A dispatcher killed in between records nothing: its jobs stay queued, and once
its lease ends another round pushes them again (at least once): a crash repeats at most the
pushes of the one round in flight. LISTEN/NOTIFY only wakes it; it also polls, so a lost
notification costs latency, never a push.
"""

import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from uuid import UUID, uuid4

from psycopg2.extensions import connection

from counts.observability import metrics
from counts.postgres.listen import Listener
from counts.postgres.pool import Database
from counts.postgres.queries import push as push_sql
from counts.push.devices import Device
from counts.push.payload import Push
from counts.push.plan import Delivery, Job, plan
from counts.push.providers import ACCEPTED, GONE, RETRY, Outcome, Provider
from counts.settings import PushSettings
from counts.sources.own import OwnSource

log = logging.getLogger(__name__)

LISTENER_NAME = "counts-push-listener"  # its LISTEN connection in pg_stat_activity

LiveUsers = Callable[[list[str]], set[str]]
# The read path's counts (counts.sources): the badge is what a poll would answer.
CountsOf = Callable[..., dict[UUID, dict]]

# Outcomes of the dispatcher's own making, beside the providers' (never sent):
EXPIRED = "expired"  # older than COUNTS_PUSH_MAX_AGE: dropped, and counted
DEFERRED = "deferred"  # in its coalescing window, or its host is backing off: queued again
SKIPPED = "skipped"  # its provider is not configured (logged once at start): dropped

# The lease, in push timeouts (COUNTS_PUSH_TIMEOUT), the one setting that bounds a send. A send
# takes about two at most (APNs may try the token's other environment, FCM retries once with a
# fresh access token), and a round starts none in the last two of its lease: every send is over
# before another dispatcher may take the user. The first two are for starting sends, far more
# than a full round needs unless its providers crawl (the rest then waits for the next round).
# Longer would only make a killed dispatcher's jobs wait longer (40 s by default) for no gain.
SEND_TIMEOUTS = 2
LEASE_TIMEOUTS = 2 * SEND_TIMEOUTS
LEASE_ENDING = "the round's lease is ending"  # a DEFERRED delivery's detail


class HostBackoff:
    """Hosts that did not answer are left alone for a while, so one hung provider cannot hold
    every round for its timeout. Per dispatcher process; it forgets a host once it answers."""

    def __init__(self, base: float, cap: float):
        self.base, self.cap = base, cap
        self._until: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._lock = threading.Lock()

    def wait(self, host: str, now: float) -> float:
        """Seconds left before `host` may be tried again (0: go)."""
        return max(0.0, self._until.get(host, 0.0) - now)

    def failed(self, host: str, now: float) -> None:
        """`host` gave no answer: wait longer each time, up to the cap."""
        with self._lock:
            failures = self._failures[host] = self._failures.get(host, 0) + 1
            self._until[host] = now + min(self.cap, self.base * 2 ** (failures - 1))

    def answered(self, host: str) -> None:
        """`host` answered: forget its failures."""
        with self._lock:
            self._until.pop(host, None)
            self._failures.pop(host, None)


@dataclass
class Record:
    """What a round writes down once its pushes are over."""

    pushed: list[UUID] = field(default_factory=list)  # their coalescing windows start now
    gone: list[UUID] = field(default_factory=list)  # forgotten
    retries: list[tuple] = field(default_factory=list)  # rows for push_sql.retry_jobs
    settings: list[tuple[UUID, dict]] = field(default_factory=list)  # learnt while pushing


class Dispatcher:
    """Leases due push jobs' users, pushes their current counts, records what the providers said."""

    def __init__(self, db: Database, providers: dict[str, Provider], settings: PushSettings,
                 live_users: LiveUsers | None = None, counts_of: CountsOf | None = None):
        self.db, self.providers = db, providers
        self.live_users = live_users or (lambda user_ids: set())
        self.counts_of = counts_of or OwnSource().unread_counts
        self.coalesce = settings.coalesce
        self.max_age = settings.max_age
        self.batch = settings.batch
        self.poll_interval = settings.poll_interval
        self.retry_base, self.retry_max = settings.retry_base, settings.retry_max
        self.send_time = SEND_TIMEOUTS * settings.timeout
        self.lease = LEASE_TIMEOUTS * settings.timeout
        self.hosts = HostBackoff(self.retry_base, min(60.0, self.retry_max))
        self.pool = ThreadPoolExecutor(settings.concurrency, thread_name_prefix="counts-push")
        self.listener = Listener(db, push_sql.PUSH_CHANNEL, self.act, LISTENER_NAME)
        self.stopped = self.listener.stopped

    # --- one round ---------------------------------------------------------------------------

    def run_once(self) -> int:
        """One round: lease, push with no transaction open, record; how many users it handled."""
        holder, leased_at = uuid4(), time.monotonic()  # before the lease's clock starts: on the safe side
        # One attempt: a lease that failed (a deadlock) leaves its jobs for the next round.
        users, jobs = self.db.run(self._lease, holder, attempts=1)
        if not users:
            return 0
        devices, counts = self.db.read(self._current, users)  # now, not at the write: a burst coalesces
        deliveries = plan(jobs, devices)
        outcomes = self._push_all(deliveries, counts, self._live(users),
                                  start_by=leased_at + self.lease - self.send_time)
        record = self._verdict(deliveries, outcomes)
        # Pushes are not repeated by a retry here: only the record is.
        self.db.run(self._record, holder, users, [job.id for job in jobs], record)
        return len(users)

    def _lease(self, cur, holder: UUID) -> tuple[list[UUID], list[Job]]:
        """Lease due users no other round holds, for this round (`holder`); (them, their due jobs)."""
        users = push_sql.candidate_users(cur, 2 * self.batch)[:self.batch]
        users = push_sql.lease_users(cur, push_sql.try_lock_users(cur, users), holder, self.lease)
        if not users:
            return [], []
        return users, [Job(*row) for row in push_sql.claim_jobs(cur, users)]

    def _current(self, cur, users: list[UUID]) -> tuple[list[Device], dict]:
        """The leased users' devices, and their counts as a poll would answer now."""
        return [Device(*row) for row in push_sql.devices_of(cur, users)], self.counts_of(cur, users)

    def _live(self, users: list[UUID]) -> set[str]:
        """Users with a live connection open (no alert for them); nobody, if that cannot be known."""
        try:
            return self.live_users([str(uid) for uid in users])
        except Exception as error:  # noqa: BLE001 - presence is an optimisation: alert rather than miss
            log.warning("presence unknown, alerting everyone this round: %r", error)
            return set()

    def _push_all(self, deliveries: list[Delivery], counts: dict, live: set[str],
                  start_by: float) -> list[Outcome]:
        """Push every delivery concurrently, none started after `start_by` (monotonic); one
        outcome each, in order."""
        now = time.time()
        futures = []
        for delivery in deliveries:
            futures.append(self.pool.submit(self._push_one, delivery, counts[delivery.device.user_id],
                                            str(delivery.device.user_id) in live, now, start_by))
        outcomes = [future.result() for future in futures]
        late = sum(outcome.detail == LEASE_ENDING for outcome in outcomes)
        if late:
            log.warning("push round out of time: %d of %d pushes wait for the next round",
                        late, len(outcomes))
        return outcomes

    def _push_one(self, delivery: Delivery, counts: dict, live: bool, now: float,
                  start_by: float) -> Outcome:
        """Push one device, unless it is too late, its provider is off, its host backed off, or
        the round's lease would end before the send did."""
        device = delivery.device
        provider = self.providers.get(device.platform)
        if provider is None:
            return Outcome(SKIPPED)
        if now - delivery.newest > self.max_age:
            return Outcome(EXPIRED)
        if device.hold_until > now:
            # Pushed within the coalescing window, and these jobs were written while that round
            # was still sending (so they could not see its window): one push at the window's end,
            # which the retry's due time takes from the device row itself (queries.push.RETRY_JOBS).
            return Outcome(DEFERRED, retry_after=0.0)
        host = provider.destination(device)
        wait = self.hosts.wait(host, now)
        if wait > 0:
            return Outcome(DEFERRED, retry_after=wait)
        if time.monotonic() > start_by:
            return Outcome(DEFERRED, LEASE_ENDING, retry_after=0.0)
        push = Push(str(device.user_id), counts["total"], counts["unread_conversations"],
                    None if delivery.conversation_id is None else str(delivery.conversation_id),
                    alert=delivery.alert and not live, expires_at=delivery.newest + self.max_age,
                    badge=counts["badge"], mentions=counts["mentions"])
        try:
            outcome = provider.send(device, push)
        except Exception:  # a bug in a provider must not lose the round's other pushes
            log.exception("push provider %s raised for device %s", device.platform, device.hint)
            outcome = Outcome(RETRY, "provider raised")
        if outcome.unreachable:
            self.hosts.failed(host, time.time())
        else:
            self.hosts.answered(host)
        return outcome

    def _verdict(self, deliveries: list[Delivery], outcomes: list[Outcome]) -> Record:
        """What each push came to, counted and logged once (the record may be retried)."""
        now = time.time()
        record = Record()
        for delivery, outcome in zip(deliveries, outcomes, strict=True):
            device, kind = delivery.device, outcome.kind
            if outcome.settings:
                record.settings.append((device.id, outcome.settings))
            if kind == SKIPPED:
                continue
            if kind == DEFERRED:  # not tried (coalescing, a host backing off, no time); not counted
                record.retries.append(self._retry(delivery, delivery.attempts, outcome.retry_after))
                continue
            if kind == RETRY:
                delay = self._delay(delivery.attempts + 1, outcome.retry_after)
                if delivery.newest + self.max_age < now + delay:
                    kind = EXPIRED  # the retry would come too late: an old alert is worse than none
                else:
                    record.retries.append(self._retry(delivery, delivery.attempts + 1, delay))
            metrics.push_sent(device.platform, {RETRY: "retried"}.get(kind, kind))
            if kind == ACCEPTED:
                record.pushed.append(device.id)
                metrics.PUSH_LATENCY.observe(now - delivery.oldest)
            elif kind == GONE:
                record.gone.append(device.id)
                log.info("push device %s (%s) is gone: %s", device.hint, device.platform, outcome.detail)
            elif kind != EXPIRED:
                log.warning("push to device %s (%s) %s: %s", device.hint, device.platform,
                            "will be retried" if kind == RETRY else "failed", outcome.detail)
        return record

    def _record(self, cur, holder: UUID, users: list[UUID], job_ids: list[int], record: Record) -> None:
        """The round's second transaction: write down what the pushes came to, end the leases."""
        push_sql.lock_users(cur, users)  # a lease of these users being taken (ours had ended)
        for device_id, settings in record.settings:
            push_sql.update_device_settings(cur, device_id, settings)
        push_sql.hold_devices(cur, record.pushed, self.coalesce)
        push_sql.forget_devices(cur, record.gone)
        push_sql.retry_jobs(cur, record.retries)
        push_sql.forget_jobs(cur, job_ids)
        push_sql.end_leases(cur, users, holder)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds before retry number `attempt`: the provider's Retry-After when it gave one,
        else exponential backoff with jitter (half fixed, half random, capped)."""
        if retry_after is not None:
            return retry_after * random.uniform(1.0, 1.1)  # never earlier than asked
        ceiling = min(self.retry_max, self.retry_base * 2 ** (attempt - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    @staticmethod
    def _retry(delivery: Delivery, attempts: int, delay: float | None) -> tuple:
        """A retry row: for this device only, keeping the write's time (for latency and max age)."""
        return (delivery.device.user_id, delivery.device.id, delivery.alert,
                delivery.conversation_id, attempts, delivery.newest, delay or 0.0)

    # --- the loop ----------------------------------------------------------------------------

    def run(self) -> None:
        """Push until stop(): rounds when woken, when a job is due, and every poll interval,
        through Postgres outages (counts.postgres.listen)."""
        self.listener.run()

    def act(self, conn: connection) -> float:
        """One round; the seconds until the next is due (0: at once, more is probably due)."""
        handled = self.run_once()
        return 0.0 if handled >= self.batch else self._idle_seconds(handled)

    def _idle_seconds(self, handled: int) -> float:
        """Until the next job is due (a coalescing window's end, a retry), at most the poll interval."""
        due_in = self.db.read(push_sql.seconds_to_next_due)
        if due_in is None:
            return self.poll_interval
        if due_in <= 0:
            # Due already: go on if the last round did something; else another dispatcher is
            # leasing those users right now, so look again shortly rather than spin.
            return 0.0 if handled else min(self.poll_interval, 0.2)
        return min(self.poll_interval, due_in)

    def stop(self) -> None:
        """Finish the round in flight, then return from run(). Safe from a signal handler."""
        self.listener.stop()

    def close(self) -> None:
        """Release the pool, the listener and the providers' connections (after run() returned)."""
        self.pool.shutdown(wait=True)
        for provider in self.providers.values():
            provider.close()
        self.listener.close()
