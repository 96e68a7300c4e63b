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
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import cast
from uuid import UUID, uuid4

from psycopg2.extensions import connection

from counts.observability import metrics
from counts.postgres.listen import Listener
from counts.postgres.pool import Database
from counts.postgres.queries import push as push_sql
from counts.postgres.queries import tickets as tickets_sql
from counts.push.backoff import HostBackoff
from counts.push.devices import Device
from counts.push.payload import Push
from counts.push.plan import Delivery, Job, plan
from counts.push.providers import ACCEPTED, GONE, RETRY, WITHHELD, BatchProvider, Outcome, Provider
from counts.push.receipts import Receipts
from counts.settings import PushSettings
from counts.sources.own import OwnSource

log = logging.getLogger(__name__)

LISTENER_NAME = "counts-push-listener"  # its LISTEN connection in pg_stat_activity

# The devices live streams named, by user ("*": a stream that named none): counts.markers.presence.
LiveDevices = Callable[[list[str]], dict[str, set[str]]]
# Seconds to wait before sending (provider, pushes, pushes a second): a rate shared by every
# dispatcher (counts.markers.sendrate).
Reserve = Callable[[str, int, float], float]
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


@dataclass
class Record:
    """What a round writes down once its pushes are over."""

    pushed: list[UUID] = field(default_factory=list)  # their coalescing windows start now
    gone: list[UUID] = field(default_factory=list)  # forgotten
    retries: list[tuple] = field(default_factory=list)  # rows for push_sql.retry_jobs
    settings: list[tuple[UUID, dict]] = field(default_factory=list)  # learnt while pushing
    tickets: list[tuple] = field(default_factory=list)  # rows for tickets_sql.record_tickets


class Dispatcher:
    """Leases due push jobs' users, pushes their current counts, records what the providers said."""

    def __init__(self, db: Database, providers: dict[str, Provider], settings: PushSettings,
                 live_devices: LiveDevices | None = None, counts_of: CountsOf | None = None,
                 reserve: Reserve | None = None):
        self.db, self.providers = db, providers
        self.reserve = reserve or (lambda provider, count, per_second: 0.0)
        self.receipts = Receipts(db, providers, settings.poll_interval)
        self.live_devices = live_devices or (lambda user_ids: {})
        self.presence = settings.presence
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

    def _live(self, users: list[UUID]) -> dict[str, set[str]]:
        """The devices of these users with a live connection open, by user (no alert for them);
        none, if that cannot be known."""
        try:
            return self.live_devices([str(uid) for uid in users])
        except Exception as error:  # noqa: BLE001 - presence is an optimisation: alert rather than miss
            log.warning("presence unknown, alerting everyone this round: %r", error)
            return {}

    def _push_all(self, deliveries: list[Delivery], counts: dict, live: dict[str, set[str]],
                  start_by: float) -> list[Outcome]:
        """Push every delivery concurrently (a batch provider's in batches), none started after
        `start_by` (monotonic); one outcome each, in order."""
        now = time.time()
        outcomes: list[Outcome] = [Outcome(SKIPPED)] * len(deliveries)
        singles: list[tuple[int, Push]] = []
        batched: dict[str, list[tuple[int, Push]]] = defaultdict(list)
        for i, delivery in enumerate(deliveries):
            ready = self._prepare(delivery, counts[delivery.device.user_id], live, now)
            if isinstance(ready, Outcome):
                outcomes[i] = ready
            elif hasattr(self.providers[delivery.device.platform], "send_batch"):
                batched[delivery.device.platform].append((i, ready))
            else:
                singles.append((i, ready))
        futures = [([i], self.pool.submit(self._send, deliveries[i].device, push, start_by))
                   for i, push in singles]
        for platform, items in batched.items():
            provider = cast(BatchProvider, self.providers[platform])
            for first in range(0, len(items), provider.batch_size):
                chunk = items[first:first + provider.batch_size]
                futures.append(([i for i, _ in chunk], self.pool.submit(
                    self._send_batch, provider, [(deliveries[i].device, push) for i, push in chunk],
                    start_by)))
        for indexes, future in futures:
            for i, outcome in zip(indexes, future.result(), strict=True):
                outcomes[i] = outcome
        late = sum(outcome.detail == LEASE_ENDING for outcome in outcomes)
        if late:
            log.warning("push round out of time: %d of %d pushes wait for the next round",
                        late, len(outcomes))
        return outcomes

    def _prepare(self, delivery: Delivery, counts: dict, live: dict[str, set[str]],
                 now: float) -> Outcome | Push:
        """The push for one device; or why there is none now (its provider is off, it is too
        late, or its device or host must wait)."""
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
        wait = self.hosts.wait(provider.destination(device), now)
        if wait > 0:
            return Outcome(DEFERRED, retry_after=wait)
        return Push(str(device.user_id), counts["total"], counts["unread_conversations"],
                    None if delivery.conversation_id is None else str(delivery.conversation_id),
                    alert=delivery.alert and not self._in_foreground(device, live),
                    expires_at=delivery.newest + self.max_age,
                    badge=counts["badge"], mentions=counts["mentions"])

    def _in_foreground(self, device: Device, live: dict[str, set[str]]) -> bool:
        """Whether the device is taken to be in front of its user: it has a live stream of its
        own, or (the per-user rule) any device of the user has one."""
        devices = live.get(str(device.user_id), set())
        return bool(devices) and (self.presence == "user" or str(device.id) in devices)

    def _send(self, device: Device, push: Push, start_by: float) -> list[Outcome]:
        """Push to one device, unless the round's lease would end before the send did."""
        if time.monotonic() > start_by:
            return [Outcome(DEFERRED, LEASE_ENDING, retry_after=0.0)]
        provider = self.providers[device.platform]
        try:
            outcome = provider.send(device, push)
        except Exception:  # a bug in a provider must not lose the round's other pushes
            log.exception("push provider %s raised for device %s", device.platform, device.hint)
            outcome = Outcome(RETRY, "provider raised")
        self._heard(provider.destination(device), [outcome])
        return [outcome]

    def _send_batch(self, provider: BatchProvider, items: list[tuple[Device, Push]],
                    start_by: float) -> list[Outcome]:
        """Push a batch in one request, at the provider's rate shared by every dispatcher."""
        wait = self._reserve(provider, len(items))
        if time.monotonic() + wait > start_by:
            return [Outcome(DEFERRED, LEASE_ENDING, retry_after=0.0)] * len(items)
        if wait > 0:
            time.sleep(wait)  # pacing to the provider's rate, which every dispatcher shares
        try:
            outcomes = provider.send_batch(items)
        except Exception:  # a bug in a provider must not lose the round's other pushes
            log.exception("push provider %s raised for a batch of %d", provider.name, len(items))
            outcomes = [Outcome(RETRY, "provider raised")] * len(items)
        self._heard(provider.destination(items[0][0]), outcomes)
        return outcomes

    def _reserve(self, provider: BatchProvider, count: int) -> float:
        """Seconds to wait before sending `count` pushes through `provider`; none if the shared
        rate cannot be read (the provider's own 429s then pace us)."""
        try:
            return self.reserve(provider.name, count, provider.send_rate)
        except Exception as error:  # noqa: BLE001 - pacing is a courtesy: send rather than stall
            log.warning("push send rate unknown, sending unpaced: %r", error)
            return 0.0

    def _heard(self, host: str, outcomes: list[Outcome]) -> None:
        """Back `host` off if it gave no answer; forget its failures if it did."""
        if any(outcome.unreachable for outcome in outcomes):
            self.hosts.failed(host, time.time())
        else:
            self.hosts.answered(host)

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
                if outcome.ticket is not None:
                    record.tickets.append((outcome.ticket, device.platform, device.id,
                                           self._receipt_delay(device.platform)))
                metrics.PUSH_LATENCY.observe(now - delivery.oldest)
            elif kind == GONE:
                record.gone.append(device.id)
                log.info("push device %s (%s) is gone: %s", device.hint, device.platform, outcome.detail)
            elif kind not in (EXPIRED, WITHHELD):
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
        tickets_sql.record_tickets(cur, record.tickets)
        push_sql.retry_jobs(cur, record.retries)
        push_sql.forget_jobs(cur, job_ids)
        push_sql.end_leases(cur, users, holder)

    def _receipt_delay(self, platform: str) -> float:
        """Seconds after a send before its provider's receipt is asked for."""
        return cast(BatchProvider, self.providers[platform]).receipt_delay

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
        self.receipts.check_due()
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
