"""Push tickets: what a provider that answers later (Expo) received, until its receipt is read."""

from uuid import UUID

RECORD_TICKETS = """
INSERT INTO push_tickets (id, provider, device_id, check_at)
SELECT t.id, t.provider, t.device_id, clock_timestamp() + make_interval(secs => t.delay)
FROM unnest(%(ids)s::text[], %(providers)s::text[], %(device_ids)s::uuid[], %(delays)s::float8[])
     AS t(id, provider, device_id, delay)
ON CONFLICT (id) DO NOTHING
"""

# Claimed by moving check_at on: committed before the receipts are asked for, so a dispatcher
# that dies meanwhile costs a delay, and two dispatchers never ask for the same ticket at once.
CLAIM_DUE_TICKETS = """
UPDATE push_tickets SET check_at = clock_timestamp() + make_interval(secs => %(again)s)
WHERE id IN (
    SELECT id FROM push_tickets
    WHERE provider = %(provider)s AND check_at <= clock_timestamp()
    ORDER BY check_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED
)
RETURNING id, device_id, extract(epoch FROM sent_at)::float8
"""

FORGET_TICKETS = "DELETE FROM push_tickets WHERE id = ANY(%s::text[])"

# Expo keeps receipts for 24 hours: a ticket older than that will never have one.
EXPIRE_TICKETS = """
DELETE FROM push_tickets WHERE provider = %(provider)s
AND sent_at < clock_timestamp() - make_interval(secs => %(seconds)s)
"""

# A token registered again after the send is a live install again (a reinstall, a restore):
# the receipt speaks of the token as it was.
FORGET_UNREGISTERED = """
DELETE FROM push_devices d USING unnest(%(device_ids)s::uuid[], %(sent)s::float8[]) AS g(id, sent_at)
WHERE d.id = g.id AND d.registered_at <= to_timestamp(g.sent_at)
"""

BACK_OFF_DEVICES = """
UPDATE push_devices SET hold_until = greatest(hold_until, clock_timestamp() + make_interval(secs => %s))
WHERE id = ANY(%s::uuid[])
"""


def record_tickets(cur, tickets: list[tuple]) -> None:
    """Keep (ticket id, provider, device id, seconds until its receipt is due) tickets."""
    if not tickets:
        return
    ids, providers, devices, delays = zip(*tickets, strict=True)
    cur.execute(RECORD_TICKETS, {"ids": list(ids), "providers": list(providers),
                                 "device_ids": [str(d) for d in devices], "delays": list(delays)})


def claim_due_tickets(cur, provider: str, limit: int, again: float) -> list[tuple[str, UUID, float]]:
    """Up to `limit` tickets whose receipts are due, held off from others for `again` seconds:
    (id, device id, sent_at epoch)."""
    cur.execute(CLAIM_DUE_TICKETS, {"provider": provider, "limit": limit, "again": again})
    return cur.fetchall()


def forget_tickets(cur, ticket_ids: list[str]) -> None:
    """Drop tickets whose receipts have been read."""
    if ticket_ids:
        cur.execute(FORGET_TICKETS, (ticket_ids,))


def expire_tickets(cur, provider: str, seconds: float) -> int:
    """Drop tickets older than `seconds` (their receipts are gone); how many."""
    cur.execute(EXPIRE_TICKETS, {"provider": provider, "seconds": seconds})
    return cur.rowcount


def forget_unregistered(cur, gone: list[tuple[UUID, float]]) -> int:
    """Remove (device id, sent_at epoch) devices not registered again since; how many."""
    if not gone:
        return 0
    cur.execute(FORGET_UNREGISTERED, {"device_ids": [str(d) for d, _ in gone],
                                      "sent": [sent for _, sent in gone]})
    return cur.rowcount


def back_off_devices(cur, device_ids: list[UUID], seconds: float) -> None:
    """Hold these devices' next pushes for at least `seconds`."""
    if device_ids:
        cur.execute(BACK_OFF_DEVICES, (seconds, [str(d) for d in device_ids]))
