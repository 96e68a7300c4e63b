"""`python -m bench.mentions`: what mentions cost the 200 path (issue 19).

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

import psycopg2

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


def administer(admin_url: str, statement: str) -> None:
    """CREATE or DROP the bench's database."""
    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


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
            UPDATE conversation_members cm SET last_mention_seq = x.seq
            FROM (SELECT conversation_id, max(seq) AS seq FROM message_mentions
                  WHERE user_id = %(user)s GROUP BY 1) x
            WHERE cm.user_id = %(user)s AND cm.conversation_id = x.conversation_id
            """, {"user": str(user)})
    cur.execute("VACUUM ANALYZE")  # as autovacuum leaves it: index-only scans need the visibility map


def percentile(samples: list[float], share: float) -> float:
    """The `share` quantile of `samples`, in milliseconds."""
    ordered = sorted(samples)
    return 1000 * ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    administer(args.admin_url, f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    administer(args.admin_url, f"CREATE DATABASE {DATABASE}")
    url = args.admin_url.rsplit("/", 1)[0] + "/" + DATABASE
    try:
        db = Database(url, timeout=30, pool_size=1)
        migrations.upgrade(db)
        db.close()
        conn = psycopg2.connect(url)
        conn.autocommit = True
        plain, mentioned = uuid.uuid4(), uuid.uuid4()
        with conn.cursor() as cur:
            seed(cur, plain, args, mentioned=False)
            seed(cur, mentioned, args, mentioned=True)
            times: dict[uuid.UUID, list[float]] = {plain: [], mentioned: []}
            for _ in range(20):  # warm the caches and the plan
                for user in times:
                    reads.unread_counts(cur, [user])
            for _ in range(args.rounds):
                for user, samples in times.items():
                    started = time.perf_counter()
                    reads.unread_counts(cur, [user])
                    samples.append(time.perf_counter() - started)
            mentions = reads.unread_counts(cur, [mentioned])[mentioned]["mentions"]
        conn.close()
    finally:
        administer(args.admin_url, f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    for name, user in (("without mentions", plain), ("with mentions", mentioned)):
        print(f"{name:17} p50 {percentile(times[user], 0.5):6.2f} ms  "
              f"p99 {percentile(times[user], 0.99):6.2f} ms  mean "
              f"{1000 * statistics.fmean(times[user]):6.2f} ms")
    ratio = percentile(times[mentioned], 0.99) / percentile(times[plain], 0.99)
    print(f"{args.memberships} memberships x {args.messages} unread, {mentions} mentions: "
          f"p99 ratio {ratio:.2f} (goal <= 1.3)")


if __name__ == "__main__":
    main()
