"""What mentions cost the 200 path (issue 19): part of `make bench` (`--skip mentions` leaves it
out), or alone, `python -m bench.mentions`.

Two users of 1,000 memberships each (`--memberships`), in a database of its own on the Postgres
at `--admin-url`: every conversation has `--messages` unread messages from its other member; for
one user `--mention-share` of them (10 %) mention them, for the other none. The counts query
(counts.postgres.queries.reads.unread_counts: statement and fold, what the 200 path runs) is
timed for each, interleaved, `--rounds` times; prints p50 and p99 of both and their ratio. The
goal: with mentions, p99 within 1.3x of without; the user without pays no extra statement.
"""

import argparse
import statistics
import time
import uuid
from dataclasses import dataclass

from bench import pg
from counts.postgres import migrations
from counts.postgres.pool import Database
from counts.postgres.queries import reads

DATABASE = "bench_mentions"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.mentions", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--memberships", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=10, help="unread per conversation")
    parser.add_argument("--mention-share", type=float, default=0.1)
    parser.add_argument("--rounds", type=int, default=400)
    return parser.parse_args(argv)


def seed(cur, user: uuid.UUID, args: argparse.Namespace, mentioned: bool) -> None:
    """`--memberships` conversations of `user` with `--messages` unread each, a share of them
    mentioning the user when `mentioned`."""
    other = str(uuid.uuid4())
    every = max(1, round(1 / args.mention_share)) if mentioned else 0
    cur.execute("""
        WITH made AS (
            INSERT INTO conversations (id, last_seq)
            SELECT gen_random_uuid(), %(messages)s FROM generate_series(1, %(n)s) RETURNING id
        ), joined AS (
            INSERT INTO conversation_members (conversation_id, user_id)
            SELECT id, u FROM made, unnest(ARRAY[%(user)s, %(other)s]::uuid[]) u RETURNING 1
        )
        INSERT INTO messages (conversation_id, seq, id, sender_id, body)
        SELECT id, s, gen_random_uuid(), %(other)s, 'hi' FROM made, generate_series(1, %(messages)s) s
        """, {"messages": args.messages, "n": args.memberships, "user": str(user), "other": other})
    if every:
        cur.execute("""
            INSERT INTO message_mentions (user_id, conversation_id, seq)
            SELECT %(user)s, m.conversation_id, m.seq FROM messages m
            JOIN conversation_members cm ON cm.conversation_id = m.conversation_id
            WHERE cm.user_id = %(user)s AND (m.seq + hashtext(m.conversation_id::text)) %% %(every)s = 0
            """, {"user": str(user), "every": every})
        cur.execute("""
            UPDATE conversation_members cm SET last_mention_seq = x.seq, unread_mentions = x.n
            FROM (SELECT conversation_id, max(seq) AS seq, count(*) AS n FROM message_mentions
                  WHERE user_id = %(user)s GROUP BY 1) x
            WHERE cm.user_id = %(user)s AND cm.conversation_id = x.conversation_id
            """, {"user": str(user)})
    cur.execute("VACUUM ANALYZE")  # as autovacuum leaves it: index-only scans need the visibility map


@dataclass
class MentionsResult:
    """The counts query's times (seconds) for a user without mentions and one with."""

    memberships: int
    unread: int
    mentions: int
    without: list[float]
    with_mentions: list[float]

    @property
    def p99_ratio(self) -> float:
        """p99 with mentions over p99 without (goal <= 1.3)."""
        return percentile(self.with_mentions, 0.99) / percentile(self.without, 0.99)


def percentile(samples: list[float], share: float) -> float:
    """The `share` quantile of `samples`, in milliseconds."""
    ordered = sorted(samples)
    return 1000 * ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def run_mentions(admin_url: str, memberships: int = 1000, messages: int = 10,
                 mention_share: float = 0.1, rounds: int = 400) -> MentionsResult:
    """Seed both users in a database of its own on `admin_url`, time their counts query
    interleaved, drop the database."""
    args = argparse.Namespace(memberships=memberships, messages=messages,
                              mention_share=mention_share)
    drop = f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"
    pg.admin(admin_url, drop, f"CREATE DATABASE {DATABASE}")
    url = pg.database_url(admin_url, DATABASE)
    try:
        db = Database(url, timeout=30, pool_size=1)
        migrations.upgrade(db)
        db.close()
        conn = pg.connect(url)
        plain, mentioned = uuid.uuid4(), uuid.uuid4()
        try:
            with conn.cursor() as cur:
                seed(cur, plain, args, mentioned=False)
                seed(cur, mentioned, args, mentioned=True)
                times: dict[uuid.UUID, list[float]] = {plain: [], mentioned: []}
                for _ in range(20):  # warm the caches and the plan
                    for user in times:
                        reads.unread_counts(cur, [user])
                for _ in range(rounds):
                    for user, samples in times.items():
                        started = time.perf_counter()
                        reads.unread_counts(cur, [user])
                        samples.append(time.perf_counter() - started)
                found = reads.unread_counts(cur, [mentioned])[mentioned]["mentions"]
        finally:
            conn.close()
    finally:
        pg.admin(admin_url, drop)
    return MentionsResult(memberships, messages, found, times[plain], times[mentioned])


def mentions_section(result: MentionsResult | None) -> list[str]:
    """The report's section: both users' p50 and p99, and the ratio against the goal."""
    if result is None:
        return []
    rows = [f"| {name} | {percentile(samples, 0.5):.2f} | {percentile(samples, 0.99):.2f} | "
            f"{1000 * statistics.fmean(samples):.2f} |"
            for name, samples in (("without mentions", result.without),
                                  ("with mentions", result.with_mentions))]
    return ["## Mentions on the 200 path", "",
            f"The counts query (statement and fold) for a user of {result.memberships:,} "
            f"memberships with {result.unread} unread each, with none of them mentioning the user "
            f"and with 10 % doing so ({result.mentions:,} mentions, one in every conversation: "
            "the worst spread), interleaved. Goal: p99 within 1.3x.", "",
            "| user | p50 ms | p99 ms | mean ms |", "|---|---|---|---|", *rows, "",
            f"p99 ratio: **{result.p99_ratio:.2f}** "
            f"({'meets' if result.p99_ratio <= 1.3 else 'misses'} the goal).", ""]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    result = run_mentions(args.admin_url, args.memberships, args.messages, args.mention_share,
                          args.rounds)
    print("\n".join(mentions_section(result)))


if __name__ == "__main__":
    main()
