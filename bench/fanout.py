"""What the 200-path design (conversation_members.may_have_unread, issue 20) costs the writes: a
message to conversations of 2, 1,000 and 100,000 members, timed as the service's write
transaction, with and without the flagging trigger, members caught up (every recipient transitions:
the worst case) or behind (none does).

The baseline is the same write with the flagging trigger (migrations/own/0009) disabled, in this
bench's database only, measured interleaved with the real one so the ratio is within one run.
"""

import statistics
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field

from tqdm import tqdm

from bench import pg
from bench.services import migrate
from bench.tables import fmt, table
from counts.postgres.queries import bumps
from counts.postgres.queries import push as push_sql
from counts.sources import own

SIZES = (2, 1_000, 100_000)
STATES = ("caught up", "behind")
VARIANTS = ("flag", "no flag")
REPS = {2: 60, 1_000: 40, 100_000: 8}
DATABASE = "bench_fanout"

# Every member has read to the end, flag off: the message must flag them all.
CATCH_UP = """
UPDATE conversation_members m SET last_read_seq = c.last_seq, may_have_unread = false
FROM conversations c WHERE c.id = m.conversation_id AND m.conversation_id = %s
"""
# Every member is behind, flag on: the message flags nobody.
FALL_BEHIND = """
UPDATE conversation_members m SET last_read_seq = 0, may_have_unread = true
WHERE m.conversation_id = %s
"""


@dataclass
class WriteCost:
    """Write-transaction times in ms by (members, state, variant)."""

    samples: dict[tuple[int, str, str], list[float]] = field(default_factory=dict)

    def median(self, members: int, state: str, variant: str) -> float:
        """The median of one cell."""
        return statistics.median(self.samples[members, state, variant])

    def ratio(self, members: int, state: str) -> float:
        """The write with the flag over the same write without it."""
        return self.median(members, state, "flag") / self.median(members, state, "no flag")


def seed(url: str) -> dict[int, uuid.UUID]:
    """One conversation per size, its members by COPY, one message (the sender's) so far."""
    conn = pg.connect(url)
    rooms = {}
    with conn.cursor() as cur:
        for size in SIZES:
            members = [uuid.uuid4() for _ in range(size)]
            rooms[size], _ = own.create_conversation(cur, members[:1])
            pg.copy_rows(cur, "conversation_members", ("conversation_id", "user_id"),
                         ((str(rooms[size]), str(m)) for m in members[1:]))
        cur.execute("VACUUM (ANALYZE) conversation_members")
    conn.close()
    return rooms


def sender(cur, room: uuid.UUID) -> uuid.UUID:
    """The conversation's first member."""
    cur.execute("SELECT user_id FROM conversation_members WHERE conversation_id = %s "
                "ORDER BY joined_at, user_id LIMIT 1", (str(room),))
    return cur.fetchone()[0]


FLAG_TRIGGER = "ALTER TABLE conversations {} TRIGGER conversations_flag_members"


@contextmanager
def flag_statement(setup, variant: str):
    """The write as shipped, or with the trigger that flags the members off (the baseline)."""
    if variant == "flag":
        yield
        return
    with setup.cursor() as cur:
        cur.execute(FLAG_TRIGGER.format("DISABLE"))
    try:
        yield
    finally:
        with setup.cursor() as cur:
            cur.execute(FLAG_TRIGGER.format("ENABLE"))


def timed_write(conn, room: uuid.UUID, by: uuid.UUID) -> float:
    """One message as the service's write transaction runs it (bumps.outbox.write_then_bump:
    the write, its outbox row and push jobs, the commit), in ms. The Redis bump after commit is
    the bump section's figure, and does not depend on the flag."""
    started = time.perf_counter()
    with conn, conn.cursor() as cur:
        _, changes = own.send_message(cur, room, by, "fan-out bench")
        bumps.enqueue_bumps(cur, changes.bump)
        push_sql.enqueue_jobs(cur, changes.alert, changes.badge, changes.conversation_id)
    return (time.perf_counter() - started) * 1000


def run_write_cost(admin_url: str, redis_url: str) -> WriteCost:
    """Every (size, state, variant), interleaved rep by rep, each write from the same state."""
    pg.recreate_database(admin_url, DATABASE)
    url = pg.database_url(admin_url, DATABASE)
    migrate(url, redis_url)
    rooms = seed(url)
    result = WriteCost()
    setup, writer = pg.connect(url), pg.connect(url, autocommit=False)
    with setup.cursor() as cur:
        senders = {size: sender(cur, room) for size, room in rooms.items()}
    steps = [(size, rep) for size in SIZES for rep in range(REPS[size])]
    for size, _ in tqdm(steps, desc="write cost of the flag", unit="round"):
        for state in STATES:
            for variant in VARIANTS:
                with setup.cursor() as cur:
                    cur.execute(CATCH_UP if state == "caught up" else FALL_BEHIND, (str(rooms[size]),))
                    cur.execute("TRUNCATE marker_outbox")
                    cur.execute("VACUUM conversation_members")  # each write meets the same table
                with flag_statement(setup, variant):
                    ms = timed_write(writer, rooms[size], senders[size])
                result.samples.setdefault((size, state, variant), []).append(ms)
    setup.close()
    writer.close()
    return result


def write_cost_lines(wc: WriteCost | None) -> list[str]:
    """The report's table: medians with and without the flagging trigger, and their ratio."""
    if wc is None:
        return []
    rows = [[f"{size:,}", state, fmt(wc.median(size, state, "no flag"), 2),
             fmt(wc.median(size, state, "flag"), 2), f"{wc.ratio(size, state):.2f}x",
             str(len(wc.samples[size, state, "flag"]))]
            for size in SIZES for state in STATES]
    return ["### What the flag costs a message write", "",
            "The service's write transaction for one message (own.send_message, its outbox row "
            "and push jobs, the commit), median ms, with the flagging trigger (as shipped) and "
            "with it disabled (the baseline), interleaved write by write. `caught up`: "
            "every member had read to the end, so the message flags every one of them (the worst "
            "case); `behind`: every member already flagged, so it writes none. Between any two "
            "messages a conversation pays for the members who read to the end since the "
            "previous one.", "",
            *table(["members", "state", "without flag (ms)", "with flag (ms)", "ratio", "writes"],
                   rows), ""]


def verdict_up_to(wc: WriteCost, limit: int = 1_000, most: float = 2.0) -> tuple[bool, str]:
    """Whether no write of up to `limit` members is more than `most` times slower; the figures."""
    cells = [(size, state) for size in SIZES if size <= limit for state in STATES]
    worst = max(wc.ratio(size, state) for size, state in cells)
    figures = "; ".join(f"{size:,} members {state}: {wc.ratio(size, state):.2f}x "
                        f"({fmt(wc.median(size, state, 'flag'), 2)} vs "
                        f"{fmt(wc.median(size, state, 'no flag'), 2)} ms)"
                        for size in SIZES for state in STATES)
    return worst <= most, figures
