"""Push: the device registry, the job queue written by the writes, and the dispatcher's leases."""

from collections.abc import Iterable
from uuid import UUID

from psycopg2.extras import Json

# --- devices -----------------------------------------------------------------------------------

# A token that another user registered moves to this one: the install changed hands (a new login
# on the phone), and the previous user's pushes must stop reaching it.
TAKE_OVER_DEVICE = """
DELETE FROM push_devices WHERE platform = %(platform)s AND token = %(token)s AND user_id <> %(user_id)s
"""

REGISTER_DEVICE = """
INSERT INTO push_devices (id, user_id, platform, token, settings)
VALUES (%(id)s, %(user_id)s, %(platform)s, %(token)s, %(settings)s)
ON CONFLICT (platform, token) DO UPDATE
SET settings = EXCLUDED.settings, registered_at = now()
RETURNING id, (xmax = 0) AS inserted
"""

# Apps re-register on every launch; the installs that stopped doing so go first.
EVICT_DEVICES = """
DELETE FROM push_devices WHERE id IN (
    SELECT id FROM push_devices WHERE user_id = %(user_id)s
    ORDER BY registered_at DESC, id OFFSET %(keep)s
)
"""

USER_DEVICES = """
SELECT id, platform, token, settings, registered_at FROM push_devices
WHERE user_id = %s ORDER BY registered_at, id
"""

DELETE_DEVICE = "DELETE FROM push_devices WHERE id = %s AND user_id = %s"

# pushsubscriptionchange: the browser's new subscription replaces the old one in place (same
# device id and user). Locked: two service workers replacing one subscription at once.
FIND_SUBSCRIPTION = """
SELECT id, settings FROM push_devices WHERE platform = 'webpush' AND token = %s FOR UPDATE
"""

# A new endpoint registered already (the page re-subscribed first) is that same browser.
REPLACE_SUBSCRIPTION = """
WITH dropped AS (
    DELETE FROM push_devices WHERE platform = 'webpush' AND token = %(token)s AND id <> %(id)s
)
UPDATE push_devices SET token = %(token)s, settings = %(settings)s, registered_at = now()
WHERE id = %(id)s
"""


def register_device(cur, device_id: UUID, user_id: UUID, platform: str, token: str,
                    settings: dict, keep: int) -> tuple[UUID, bool]:
    """Insert or refresh a device; (its id, whether it is new). Keeps the user's `keep` newest."""
    params = {"id": str(device_id), "user_id": str(user_id), "platform": platform, "token": token,
              "settings": Json(settings), "keep": keep}
    cur.execute(TAKE_OVER_DEVICE, params)
    cur.execute(REGISTER_DEVICE, params)
    device_id, inserted = cur.fetchone()
    cur.execute(EVICT_DEVICES, params)
    return device_id, inserted


def user_devices(cur, user_id: UUID) -> list[tuple]:
    """(id, platform, token, settings, registered_at) of each of a user's devices."""
    cur.execute(USER_DEVICES, (str(user_id),))
    return cur.fetchall()


def find_subscription(cur, endpoint: str) -> tuple[UUID, dict] | None:
    """(id, settings) of the browser subscribed at `endpoint`, locked; None if none is."""
    cur.execute(FIND_SUBSCRIPTION, (endpoint,))
    return cur.fetchone()


def replace_subscription(cur, device_id: UUID, endpoint: str, settings: dict) -> None:
    """Point a browser's device at its new subscription."""
    cur.execute(REPLACE_SUBSCRIPTION, {"id": str(device_id), "token": endpoint,
                                       "settings": Json(settings)})


def delete_device(cur, user_id: UUID, device_id: UUID) -> bool:
    """Remove one of a user's devices; False if they have no such device."""
    cur.execute(DELETE_DEVICE, (str(device_id), str(user_id)))
    return cur.rowcount == 1


# --- jobs, written by the count-changing writes ------------------------------------------------

# push(alert, badge, conversation_id) (migrations/0004_push_function.sql) queues a job per user
# with a device, held by a device's coalescing window, and wakes the dispatchers at commit. It is
# the one definition: attached mode's triggers call counts.push() with the same arguments. Our
# connections search the mode's schema first, so the name finds it in both modes.
ENQUEUE_JOBS = "SELECT push(%s::uuid[], %s::uuid[], %s::uuid)"

# The channel push() notifies: a wake-up, never the job.
PUSH_CHANNEL = "counts_push"


def enqueue_jobs(cur, alert: Iterable[UUID], badge: Iterable[UUID],
                 conversation_id: UUID | None) -> int:
    """In the caller's transaction: a job per user with a device (alerted if in `alert`); the
    dispatchers are woken at commit. How many were queued."""
    alerted, badged = [str(uid) for uid in alert], [str(uid) for uid in badge]
    if not alerted and not badged:
        return 0
    conversation = None if conversation_id is None else str(conversation_id)
    cur.execute(ENQUEUE_JOBS, (alerted, badged, conversation))
    return cur.fetchone()[0]


# --- the dispatcher's round --------------------------------------------------------------------

# A round holds its users by a lease (push_leases, migrations/0005_push_leases.sql), committed
# before it pushes, so no transaction stays open while the providers answer. A user's lease row is
# written only under that user's advisory lock (transaction-scoped, in short transactions): the
# lease takes it with a try (a user another dispatcher is leasing right now is skipped), the record
# waits for it, so neither ever waits on a lease row another transaction holds.
LOCK_NAMESPACE = 0x70757368  # "push": the two-key advisory lock space, apart from any other lock

# Due jobs of users nobody holds a lease on; their users are the candidates of this round.
CANDIDATES = """
SELECT DISTINCT user_id FROM (
    SELECT j.user_id FROM push_jobs j
    WHERE j.due_at <= clock_timestamp()
      AND NOT EXISTS (SELECT 1 FROM push_leases l
                      WHERE l.user_id = j.user_id AND l.until > clock_timestamp())
    ORDER BY j.due_at LIMIT %(limit)s
) due
"""

# A function scan evaluates the lock once per user.
TRY_LOCK_USERS = """
SELECT u FROM unnest(%(user_ids)s::uuid[]) AS u
WHERE pg_try_advisory_xact_lock(%(namespace)s, hashtext(u::text))
"""

# Sorted ids, locked in that order: two records can never wait for each other in a cycle.
LOCK_USERS = """
SELECT pg_advisory_xact_lock(%(namespace)s, hashtext(u::text))
FROM unnest(%(user_ids)s::uuid[]) AS u
"""

# One dispatcher per user at a time, until the lease ends: two dispatchers pushing one user at
# once could deliver an older total after a newer one. A lease that has not ended is kept.
LEASE_USERS = """
INSERT INTO push_leases AS l (user_id, holder, until)
SELECT u, %(holder)s, clock_timestamp() + make_interval(secs => %(seconds)s)
FROM unnest(%(user_ids)s::uuid[]) AS u
ON CONFLICT (user_id) DO UPDATE SET holder = EXCLUDED.holder, until = EXCLUDED.until
WHERE l.until <= clock_timestamp()
RETURNING l.user_id
"""

# Not locked: the lease keeps other dispatchers off these users' jobs.
CLAIM_JOBS = """
SELECT id, user_id, device_id, alert, conversation_id,
       extract(epoch FROM created_at)::float8, attempts
FROM push_jobs
WHERE user_id = ANY(%(user_ids)s::uuid[]) AND due_at <= clock_timestamp()
ORDER BY id
"""

# Only the round's own rows: a lease another round took once it had ended is that round's.
END_LEASES = "DELETE FROM push_leases WHERE user_id = ANY(%(user_ids)s::uuid[]) AND holder = %(holder)s"

DEVICES_OF = """
SELECT id, user_id, platform, token, settings, extract(epoch FROM hold_until)::float8 FROM push_devices
WHERE user_id = ANY(%s::uuid[]) ORDER BY id
"""

FORGET_JOBS = "DELETE FROM push_jobs WHERE id = ANY(%s)"

# Never due inside the device's coalescing window, and due exactly at its end: deferrals written
# by two rounds then come due together and go as one push, not one each.
RETRY_JOBS = """
INSERT INTO push_jobs (user_id, device_id, alert, conversation_id, attempts, created_at, due_at)
SELECT r.user_id, r.device_id, r.alert, r.conversation_id, r.attempts, to_timestamp(r.created_at),
       greatest(clock_timestamp() + make_interval(secs => r.delay), d.hold_until)
FROM unnest(%(user_ids)s::uuid[], %(device_ids)s::uuid[], %(alerts)s::boolean[],
            %(conversation_ids)s::uuid[], %(attempts)s::int[], %(created)s::float8[],
            %(delays)s::float8[])
     AS r(user_id, device_id, alert, conversation_id, attempts, created_at, delay)
LEFT JOIN push_devices d ON d.id = r.device_id
"""

HOLD_DEVICES = """
UPDATE push_devices SET hold_until = clock_timestamp() + make_interval(secs => %s)
WHERE id = ANY(%s::uuid[])
"""

FORGET_DEVICES = "DELETE FROM push_devices WHERE id = ANY(%s::uuid[])"

UPDATE_DEVICE_SETTINGS = "UPDATE push_devices SET settings = settings || %s WHERE id = %s"

# A job is due for this dispatcher once its user's lease (another round's) has ended too.
SECONDS_TO_NEXT_DUE = """
SELECT extract(epoch FROM min(greatest(j.due_at, l.until)) - clock_timestamp())::float8
FROM push_jobs j LEFT JOIN push_leases l USING (user_id)
"""

DEVICES_BY_PLATFORM = "SELECT platform, count(*) FROM push_devices GROUP BY platform"

QUEUE_STATS = """
SELECT count(*), coalesce(extract(epoch FROM clock_timestamp() - min(created_at))::float8, 0)
FROM push_jobs
"""


def candidate_users(cur, limit: int) -> list[UUID]:
    """Users with due jobs and no lease (another dispatcher's round) on them."""
    cur.execute(CANDIDATES, {"limit": limit})
    return [row[0] for row in cur.fetchall()]


def try_lock_users(cur, user_ids: list[UUID]) -> list[UUID]:
    """The users whose advisory lock this transaction got; others are being leased right now."""
    cur.execute(TRY_LOCK_USERS, {"user_ids": [str(uid) for uid in user_ids], "namespace": LOCK_NAMESPACE})
    return [row[0] for row in cur.fetchall()]


def lock_users(cur, user_ids: list[UUID]) -> None:
    """Wait for the advisory locks of these users (a lease of them being taken right now)."""
    cur.execute(LOCK_USERS, {"user_ids": sorted(str(uid) for uid in user_ids), "namespace": LOCK_NAMESPACE})


def lease_users(cur, user_ids: list[UUID], holder: UUID, seconds: float) -> list[UUID]:
    """Lease users whose advisory lock this transaction holds, for `seconds`, to round `holder`;
    those leased (the others are still another round's)."""
    cur.execute(LEASE_USERS, {"user_ids": [str(uid) for uid in user_ids], "holder": str(holder),
                              "seconds": seconds})
    return [row[0] for row in cur.fetchall()]


def claim_jobs(cur, user_ids: list[UUID]) -> list[tuple]:
    """The due jobs of users this round leased:
    (id, user_id, device_id, alert, conversation_id, created_at epoch, attempts)."""
    cur.execute(CLAIM_JOBS, {"user_ids": [str(uid) for uid in user_ids]})
    return cur.fetchall()


def end_leases(cur, user_ids: list[UUID], holder: UUID) -> None:
    """Let other rounds take these users again (the leases round `holder` still has)."""
    cur.execute(END_LEASES, {"user_ids": [str(uid) for uid in user_ids], "holder": str(holder)})


def devices_of(cur, user_ids: list[UUID]) -> list[tuple]:
    """(id, user_id, platform, token, settings, hold_until epoch) of every device of these users."""
    cur.execute(DEVICES_OF, ([str(uid) for uid in user_ids],))
    return cur.fetchall()


def forget_jobs(cur, job_ids: list[int]) -> None:
    """Delete jobs this round has dealt with."""
    if job_ids:
        cur.execute(FORGET_JOBS, (job_ids,))


def retry_jobs(cur, retries: list[tuple]) -> None:
    """Queue device retries: (user_id, device_id, alert, conversation_id, attempts,
    created_at epoch, delay seconds) each."""
    if not retries:
        return
    columns = list(zip(*retries, strict=True))
    cur.execute(RETRY_JOBS, {
        "user_ids": [str(v) for v in columns[0]], "device_ids": [str(v) for v in columns[1]],
        "alerts": list(columns[2]),
        "conversation_ids": [None if v is None else str(v) for v in columns[3]],
        "attempts": list(columns[4]), "created": list(columns[5]), "delays": list(columns[6])})


def hold_devices(cur, device_ids: list[UUID], seconds: float) -> None:
    """Start the coalescing window of devices just pushed."""
    if device_ids:
        cur.execute(HOLD_DEVICES, (seconds, [str(d) for d in device_ids]))


def forget_devices(cur, device_ids: list[UUID]) -> None:
    """Remove devices their provider called gone."""
    if device_ids:
        cur.execute(FORGET_DEVICES, ([str(d) for d in device_ids],))


def update_device_settings(cur, device_id: UUID, settings: dict) -> None:
    """Merge settings learnt while pushing (an APNs token's real environment)."""
    cur.execute(UPDATE_DEVICE_SETTINGS, (Json(settings), str(device_id)))


def seconds_to_next_due(cur) -> float | None:
    """Seconds until the earliest job is due (negative: overdue), or None when the queue is empty."""
    cur.execute(SECONDS_TO_NEXT_DUE)
    return cur.fetchone()[0]


def devices_by_platform(cur) -> dict[str, int]:
    """Devices registered, by platform."""
    cur.execute(DEVICES_BY_PLATFORM)
    return dict(cur.fetchall())


def queue_stats(cur) -> tuple[int, float]:
    """(jobs queued, age in seconds of the oldest)."""
    cur.execute(QUEUE_STATS)
    depth, oldest = cur.fetchone()
    return depth, oldest
