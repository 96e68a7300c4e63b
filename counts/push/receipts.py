"""Receipts: what became of pushes a provider accepted and answers for later (Expo).

A dispatcher asks, now and then, for the receipts of tickets whose COUNTS_EXPO_RECEIPT_DELAY has
passed, at most 1,000 at a time. A receipt's error is acted on: DeviceNotRegistered forgets the
device (unless it registered again after the send), MessageRateExceeded holds the device's next
push back; the others (MessageTooBig, MismatchSenderId, InvalidCredentials...) are our or the
project's mistakes, counted for an alert and logged, and no token is deleted for them. A ticket
still without a receipt is asked for again later; after 24 hours Expo has forgotten it, and it
is dropped and counted.
"""

import logging
import time
from typing import cast
from uuid import UUID

from counts.observability import metrics
from counts.postgres.pool import Database
from counts.postgres.queries import tickets as tickets_sql
from counts.push.providers import BatchProvider, Provider

log = logging.getLogger(__name__)

KEPT_FOR = 24 * 3600.0  # seconds a provider keeps receipts (Expo: "cleared after 24 hours")
RECHECK = 300.0  # seconds before a ticket without a receipt yet is asked for again, at most
RATE_EXCEEDED_HOLD = 60.0  # seconds a device told MessageRateExceeded waits (Expo gives no figure)
ROUNDS = 10  # receipt requests per check at most, so a backlog cannot hold up the pushes


class NoAnswer(Exception):
    """The provider did not answer for its receipts (its tickets wait)."""


class Receipts:
    """Reads due receipts for each provider that has them, at most once per `every` seconds."""

    def __init__(self, db: Database, providers: dict[str, Provider], every: float):
        self.db, self.every = db, every
        self.providers = [cast(BatchProvider, provider) for provider in providers.values()
                          if hasattr(provider, "receipts")]
        self._next = 0.0
        self._failures: dict[str, int] = {}
        self._quiet_until: dict[str, float] = {}  # a provider that failed is left alone till then

    def check_due(self) -> None:
        """Read the receipts that are due, if it is time to look; never raises."""
        if self.providers and time.monotonic() >= self._next:
            self.check_now()

    def check_now(self) -> None:
        """Read the receipts that are due now; never raises (a failure is logged, and its
        tickets are asked for again later)."""
        self._next = time.monotonic() + self.every
        for provider in self.providers:
            if time.monotonic() < self._quiet_until.get(provider.name, 0.0):
                continue
            try:
                for _ in range(ROUNDS):
                    if self.check(provider) < provider.receipt_batch:
                        break
                self._failures[provider.name] = 0
            except NoAnswer:
                self._failed(provider)
            except Exception:  # receipts must not stop the pushes: their tickets wait
                log.exception("push receipts from %s not read this time", provider.name)
                self._failed(provider)

    def _failed(self, provider: BatchProvider) -> None:
        """Leave a provider's receipts alone for longer each time they fail (up to RECHECK): a
        hung provider would otherwise cost every round a timeout, in the loop that pushes."""
        failures = self._failures[provider.name] = self._failures.get(provider.name, 0) + 1
        self._quiet_until[provider.name] = time.monotonic() + min(RECHECK, self.every * 2 ** failures)

    def check(self, provider: BatchProvider) -> int:
        """One request's worth of due tickets: read their receipts and act; how many were due."""
        again = min(provider.receipt_delay, RECHECK)
        expired, due = self.db.run(self._claim, provider, again)
        if expired:  # counted once committed: a transaction may be retried
            metrics.PUSH_RECEIPTS_UNFETCHED.labels(provider.name).inc(expired)
            log.warning("push receipts from %s: %d never read within 24 h", provider.name, expired)
        if not due:
            return 0
        receipts = provider.receipts([ticket_id for ticket_id, _, _ in due])
        if receipts is None:
            raise NoAnswer(provider.name)  # these tickets are asked for again after `again`
        read, gone, held = [], [], []
        for ticket_id, device_id, sent_at in due:
            receipt = receipts.get(ticket_id)
            if receipt is None:
                continue
            read.append(ticket_id)
            if receipt.ok:
                metrics.push_sent(provider.name, "delivered")
                continue
            metrics.push_receipt_error(provider.name, receipt.error)
            if receipt.error == "DeviceNotRegistered":
                gone.append((device_id, sent_at))
            elif receipt.error == "MessageRateExceeded":
                held.append(device_id)
            else:
                log.error("push receipt from %s: %s %s", provider.name, receipt.error, receipt.message)
        forgotten = self.db.run(self._record, read, gone, held)
        if forgotten:
            log.info("push receipts from %s: %d devices gone", provider.name, forgotten)
        return len(due)

    def _claim(self, cur, provider: BatchProvider,
               again: float) -> tuple[int, list[tuple[str, UUID, float]]]:
        """Drop the tickets too old to have a receipt; claim the due ones. (How many were
        dropped, the claimed.)"""
        expired = tickets_sql.expire_tickets(cur, provider.name, KEPT_FOR)
        return expired, tickets_sql.claim_due_tickets(cur, provider.name, provider.receipt_batch, again)

    @staticmethod
    def _record(cur, read: list[str], gone: list[tuple[UUID, float]], held: list[UUID]) -> int:
        """Forget the tickets read and the devices gone; hold back the rate-limited ones."""
        tickets_sql.forget_tickets(cur, read)
        tickets_sql.back_off_devices(cur, held, RATE_EXCEEDED_HOLD)
        return tickets_sql.forget_unregistered(cur, gone)
