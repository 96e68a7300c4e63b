"""Scaling benchmark: 200-path time versus memberships, total messages and unread backlog; bump
time versus fan-out; Redis bytes per marker. (By topology: bench/topology.py.)

One database grows from the small message count to the large one (same conversations, same
probe users), so the two sizes differ only in the messages table and its indexes.
"""

import contextlib
import http.client
import json
import os
import random
import threading
import time
import uuid
from dataclasses import dataclass, field

import numpy as np
import redis
from tqdm import tqdm

from bench import pg
from bench.fanout import WriteCost, run_write_cost
from bench.profile import PySpy
from bench.services import HOST, JWT_SECRET, NO_LIMIT, OUT, gunicorn, migrate, service_env
from counts import markers
from counts.identity import mint_token
from counts.markers import keys
from counts.postgres.queries import reads
from counts.settings import parse_redis_url
from tests.support.services import Gunicorn

CONVERSATIONS = 50_000
# The first BUSY conversations (every probe is in them) hold BUSY_MESSAGES each, so a backlog of
# 1,000 exists at every size; the other conversations share the rest of the messages evenly.
BUSY, BUSY_MESSAGES = 100, 2_000
MEMBERSHIPS = (10, 100, 1_000, 10_000)
# A membership probe has news in this many of its conversations (backlog 10 each) and has read
# the rest: the 200 path's goal is cost by what is unread, not by memberships (issue 20).
NEWS = 10
BACKLOGS = (0, 10, 100, 1_000)
BACKLOG_MEMBERSHIPS = 100
BACKGROUND_USERS, BACKGROUND_MEMBERSHIPS = 50_000, 10
DELETED_SHARE = 0.01
FANOUTS = (1, 100, 10_000)
BATCH_CONVERSATIONS = 2_500
PROFILE_SECONDS = 4
SENDER = "00000000-0000-4000-8000-000000000001"


@dataclass
class Probe:
    """A user whose counts are timed: k memberships, `unread` of them (all: None) with `backlog`
    unread messages, the others read to the end."""

    label: str
    user_id: str
    memberships: int
    backlog: int
    unread: int | None = None
    token: str = ""


@dataclass
class Timing:
    """Latency percentiles of repeated calls, in ms."""

    p50: float
    p99: float
    count: int
    errors: int = 0

    @classmethod
    def of(cls, samples_ms: list[float], errors: int = 0) -> "Timing":
        """Summarize samples."""
        p50, p99 = np.percentile(samples_ms, [50, 99])
        return cls(float(p50), float(p99), len(samples_ms), errors)


@dataclass
class ScalingResult:
    """200-path timings by (messages, probe), bump timings by fan-out, marker memory."""

    sizes: list[int] = field(default_factory=list)
    query: dict[tuple[int, str], Timing] = field(default_factory=dict)
    http: dict[tuple[int, str], Timing] = field(default_factory=dict)
    plans: dict[str, str] = field(default_factory=dict)  # EXPLAIN ANALYZE by probe, largest size
    seed_seconds: dict[int, float] = field(default_factory=dict)
    bump_api: dict[int, Timing] = field(default_factory=dict)
    bump_http: dict[int, Timing] = field(default_factory=dict)
    marker_bytes: float = 0.0
    marker_memory_usage: int = 0
    probes: list[Probe] = field(default_factory=list)
    profile_200: dict | None = None  # py-spy of the worker: the 1,000-membership 200 path
    profile_bump: dict | None = None  # py-spy of markers.bump of 10,000 users
    write_cost: WriteCost | None = None  # what the may_have_unread flag costs a message


def make_probes() -> list[Probe]:
    """Membership probes (news in NEWS of them; and, labelled so, in all of them) and backlog
    probes (100 memberships, all behind)."""
    probes = [Probe(f"{k:,} memberships", str(uuid.uuid4()), k, 10, min(k, NEWS))
              for k in MEMBERSHIPS]
    probes += [Probe(f"{k:,} memberships, all unread", str(uuid.uuid4()), k, 10)
               for k in MEMBERSHIPS if k > NEWS]
    probes += [Probe(f"backlog {b:,}/conversation", str(uuid.uuid4()), BACKLOG_MEMBERSHIPS, b)
               for b in BACKLOGS]
    for probe in probes:
        probe.token = mint_token(JWT_SECRET, probe.user_id, ttl=6 * 3600)
    return probes


def seed_members(database_url: str, probes: list[Probe], seed: int = 7) -> list[str]:
    """Conversations, background members and probe members (COPY); the conversation ids."""
    rng = random.Random(seed)
    conversations = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(CONVERSATIONS)]
    conn = pg.connect(database_url, autocommit=False)
    with conn.cursor() as cur:
        cur.execute("TRUNCATE conversations, conversation_members, messages, message_mentions, marker_outbox")
        pg.copy_rows(cur, "conversations", ("id",), ((c,) for c in conversations))
        background = ((conversations[rng.randrange(CONVERSATIONS)], user)
                      for user in (str(uuid.uuid4()) for _ in range(BACKGROUND_USERS))
                      for _ in range(BACKGROUND_MEMBERSHIPS))
        pg.copy_rows(cur, "conversation_members", ("conversation_id", "user_id"),
                     dict.fromkeys(background))  # dict: drop the rare duplicate pair
        pg.copy_rows(cur, "conversation_members", ("conversation_id", "user_id"),
                     ((c, probe.user_id) for probe in probes for c in conversations[:probe.memberships]))
        cur.execute("CREATE TABLE IF NOT EXISTS bench_conversations (n int PRIMARY KEY, id uuid)")
        cur.execute("TRUNCATE bench_conversations")
        pg.copy_rows(cur, "bench_conversations", ("n", "id"), enumerate(conversations))
    conn.commit()
    conn.close()
    return conversations


INSERT_MESSAGES = """
INSERT INTO messages (conversation_id, seq, id, sender_id, body, deleted_at)
SELECT c.id, s, md5(c.id::text || '/' || s)::uuid, %(sender)s, 'message ' || s,
       CASE WHEN random() < %(deleted)s THEN now() END
FROM bench_conversations c,
     generate_series(1, CASE WHEN c.n < %(busy)s THEN %(busy_messages)s ELSE %(per)s END) s
WHERE c.n >= %(lo)s AND c.n < %(hi)s
"""

SET_LAST_SEQ = """
UPDATE conversations c
SET last_seq = CASE WHEN b.n < %(busy)s THEN %(busy_messages)s ELSE %(per)s END
FROM bench_conversations b WHERE b.id = c.id
"""

SET_LAST_DELETED_SEQ = """
UPDATE conversations c SET last_deleted_seq = d.seq
FROM (SELECT conversation_id, max(seq) AS seq FROM messages
      WHERE deleted_at IS NOT NULL GROUP BY conversation_id) d
WHERE c.id = d.conversation_id
"""

# The seed bypasses the service's writes: it sets may_have_unread as they would (invariant 17).
READ_ALL = """
UPDATE conversation_members m SET last_read_seq = c.last_seq, may_have_unread = false
FROM conversations c WHERE c.id = m.conversation_id
"""

# A probe is `backlog` messages behind in its first `unread` conversations (NULL: all of them).
SET_BACKLOG = """
UPDATE conversation_members m SET last_read_seq = GREATEST(0, c.last_seq - %(backlog)s),
                                  may_have_unread = GREATEST(0, c.last_seq - %(backlog)s) < c.last_seq
FROM conversations c JOIN bench_conversations b ON b.id = c.id
WHERE c.id = m.conversation_id AND m.user_id = %(user_id)s
  AND (%(unread)s::int IS NULL OR b.n < %(unread)s::int)
"""


MESSAGE_INDEXES = """
SELECT 'ALTER TABLE messages ADD CONSTRAINT ' || quote_ident(conname) || ' '
       || pg_get_constraintdef(oid), 'ALTER TABLE messages DROP CONSTRAINT ' || quote_ident(conname)
FROM pg_constraint WHERE conrelid = 'messages'::regclass AND contype IN ('p', 'u')
UNION ALL
SELECT indexdef, 'DROP INDEX ' || quote_ident(indexname) FROM pg_indexes
WHERE tablename = 'messages' AND indexname NOT IN (
    SELECT conname FROM pg_constraint WHERE conrelid = 'messages'::regclass)
"""

# Foreign keys other tables hold on messages (message_mentions'): they depend on its primary key,
# so they are dropped before it and added back after it (on tables emptied with messages).
MESSAGE_REFERENCES = """
SELECT 'ALTER TABLE ' || conrelid::regclass || ' ADD CONSTRAINT ' || quote_ident(conname) || ' '
       || pg_get_constraintdef(oid),
       'ALTER TABLE ' || conrelid::regclass || ' DROP CONSTRAINT ' || quote_ident(conname)
FROM pg_constraint WHERE confrelid = 'messages'::regclass AND contype = 'f'
"""


def messages_per_conversation(total: int) -> int:
    """Messages in each conversation that is not one of the BUSY ones."""
    return max(1, (total - BUSY * BUSY_MESSAGES) // (CONVERSATIONS - BUSY))


def seed_messages(database_url: str, total: int, probes: list[Probe]) -> None:
    """Replace the messages with about `total` (see BUSY), 1 % of them deleted.

    Batched server-side INSERT ... SELECT on two connections, indexes dropped during the load and
    rebuilt after (the same definitions, read from the catalog), then VACUUM ANALYZE.
    """
    params = {"sender": SENDER, "deleted": DELETED_SHARE, "busy": BUSY,
              "busy_messages": BUSY_MESSAGES, "per": messages_per_conversation(total)}
    conn = pg.connect(database_url)
    with conn.cursor() as cur:
        cur.execute("TRUNCATE messages, message_mentions")
        cur.execute(MESSAGE_REFERENCES)
        references = cur.fetchall()
        cur.execute(MESSAGE_INDEXES)
        indexes = cur.fetchall()
        for _, drop in references + indexes:
            cur.execute(drop)
    batches = [(lo, min(lo + BATCH_CONVERSATIONS, CONVERSATIONS))
               for lo in range(0, CONVERSATIONS, BATCH_CONVERSATIONS)]
    lock = threading.Lock()
    with tqdm(total=total, desc=f"seed {total:,} messages", unit="row", unit_scale=True) as bar:
        def load() -> None:
            worker = pg.connect(database_url)
            with worker.cursor() as cur:
                while True:
                    with lock:
                        if not batches:
                            break
                        lo, hi = batches.pop()
                    cur.execute(INSERT_MESSAGES, {**params, "lo": lo, "hi": hi})
                    with lock:
                        bar.update(cur.rowcount)
            worker.close()

        threads = [threading.Thread(target=load) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    with conn.cursor() as cur:
        for create, _ in tqdm(indexes + references, desc="rebuild message indexes", unit="index"):
            cur.execute(create)
        cur.execute(SET_LAST_SEQ, params)
        cur.execute(SET_LAST_DELETED_SEQ)  # the service's message deletes keep it; we bypassed them
        cur.execute(READ_ALL)
        for probe in probes:
            cur.execute(SET_BACKLOG, {"backlog": probe.backlog, "user_id": probe.user_id,
                                      "unread": probe.unread})
        cur.execute("VACUUM (FREEZE, ANALYZE)")
    conn.close()


def reps_for(memberships: int) -> int:
    """Repetitions per probe and size: enough for a p99, fewer where one call is slow."""
    return {10_000: 40, 1_000: 300}.get(memberships, 500)


def sample_query(cur, user_id: str, reps: int) -> list[float]:
    """The service's own counts statement for one user, timed from the client, in ms."""
    samples = []
    for _ in range(reps):
        started = time.perf_counter()
        reads.unread_counts(cur, [uuid.UUID(user_id)])
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def sample_http(port: int, path: str, token: str, reps: int,
                body: bytes | None = None) -> tuple[list[float], int]:
    """A GET (or JSON POST) repeated on one keep-alive connection: (ms samples, errors)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    samples, errors = [], 0
    for _ in range(reps):
        started = time.perf_counter()
        try:
            conn.request("GET" if body is None else "POST", path, body=body, headers=headers)
            response = conn.getresponse()
            response_body = response.read()
        except OSError:  # counted, and the next request reconnects
            errors += 1
            conn.close()
            continue
        samples.append((time.perf_counter() - started) * 1000)
        if response.status >= 300:
            raise RuntimeError(f"{path}: HTTP {response.status} {response_body[:200]!r}")
    conn.close()
    return samples, errors


def measure_sizes(result: ScalingResult, urls: dict[int, str], servers: dict[int, Gunicorn]) -> None:
    """Time every probe's counts query and 200 path in every database, in interleaved blocks so
    drift on this shared machine hits each size alike; then the plan and a profile at the largest."""
    conns = {size: pg.connect(url) for size, url in urls.items()}
    for probe in tqdm(result.probes, desc="200 path, sizes interleaved", unit="probe"):
        reps = reps_for(probe.memberships)
        block = max(10, reps // 5)
        found = {size: ([], [], 0) for size in urls}
        path = f"/v1/users/{probe.user_id}/unread-counts"
        for _ in range(reps // block):
            for size in urls:
                query_ms, http_ms, errors = found[size]
                with conns[size].cursor() as cur:
                    query_ms += sample_query(cur, probe.user_id, block)
                samples, failed = sample_http(servers[size].port, path, probe.token, block)
                http_ms += samples
                found[size] = (query_ms, http_ms, errors + failed)
        for size, (query_ms, http_ms, errors) in found.items():
            result.query[size, probe.label] = Timing.of(query_ms)
            result.http[size, probe.label] = Timing.of(http_ms, errors)
    largest = max(urls)
    heavy = next(p for p in result.probes if p.memberships == 1_000 and p.unread == NEWS)
    # The plans at 1,000 and 10,000 memberships: the partial index's rows only, a nested loop
    # of primary-key probes (no hash join over all conversations).
    explained = [p for p in result.probes if p.memberships >= 1_000 and p.unread == NEWS]
    with conns[largest].cursor() as cur:
        for probe in explained:
            statement = cur.mogrify(reads.UNREAD_COUNTS, {"user_ids": [probe.user_id]}).decode()
            cur.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + statement)
            result.plans[probe.label] = "\n".join(row[0] for row in cur.fetchall())
    for conn in conns.values():
        conn.close()
    server = servers[largest]
    spy = PySpy(server.process.pid, PROFILE_SECONDS, OUT / "profile-200-path.txt")
    deadline = time.monotonic() + PROFILE_SECONDS
    while time.monotonic() < deadline:
        sample_http(server.port, f"/v1/users/{heavy.user_id}/unread-counts", heavy.token, 20)
    result.profile_200 = spy.finish()


def measure_bumps(result: ScalingResult, redis_url: str, server: Gunicorn) -> None:
    """Bump 1, 100 and 10,000 users: markers.bump (one pipeline) and POST /v1/markers/bump."""
    client = markers.connect(parse_redis_url(redis_url), 5, 64)
    service = mint_token(JWT_SECRET, "bench", service=True)
    for fanout in tqdm(FANOUTS, desc="bump fan-out", unit="size"):
        users = [str(uuid.uuid4()) for _ in range(fanout)]
        reps = 40 if fanout >= 10_000 else 300
        samples = []
        for _ in range(reps):
            started = time.perf_counter()
            markers.bump(client, users)
            samples.append((time.perf_counter() - started) * 1000)
        result.bump_api[fanout] = Timing.of(samples)
        if fanout == max(FANOUTS):
            spy = PySpy(os.getpid(), PROFILE_SECONDS, OUT / "profile-bump.txt")
            deadline = time.monotonic() + PROFILE_SECONDS
            while time.monotonic() < deadline:
                markers.bump(client, users)
            result.profile_bump = spy.finish()
        body = json.dumps({"user_ids": users}).encode()
        result.bump_http[fanout] = Timing.of(*sample_http(server.port, "/v1/markers/bump", service,
                                                          reps // 2, body))
    client.close()


def measure_marker_memory(result: ScalingResult, redis_url: str, count: int = 100_000) -> None:
    """Redis memory per marker: used_memory before and after `count` bumps, in a spare db."""
    client = redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/3")
    client.flushdb()  # the bench's private Redis, its spare db
    before = client.info("memory")["used_memory"]
    users = [str(uuid.uuid4()) for _ in range(count)]
    for start in range(0, count, 10_000):
        markers.bump(client, users[start:start + 10_000])
    result.marker_bytes = (client.info("memory")["used_memory"] - before) / count
    result.marker_memory_usage = client.memory_usage(keys.marker_key(users[0]), samples=0)
    client.flushdb()
    client.close()


def run_scaling(admin_url: str, redis_url: str, sizes: tuple[int, ...]) -> ScalingResult:
    """One database per size (same conversations and probes), one server each; measure them
    interleaved; then bumps and marker memory."""
    result = ScalingResult(sizes=sorted(sizes), probes=make_probes())
    urls = {}
    for total in result.sizes:
        name = f"bench_scale_{total}"
        pg.recreate_database(admin_url, name)
        urls[total] = pg.database_url(admin_url, name)
        migrate(urls[total], redis_url)
        started = time.monotonic()
        seed_members(urls[total], result.probes)
        seed_messages(urls[total], total, result.probes)
        result.seed_seconds[total] = time.monotonic() - started
    with contextlib.ExitStack() as stack:
        servers = {total: stack.enter_context(gunicorn(service_env(
            url, redis_url, outbox_drain_interval=0, poll_interval=3, rate_limit=NO_LIMIT),
            workers=1, threads=8)) for total, url in urls.items()}
        measure_sizes(result, urls, servers)
        measure_bumps(result, redis_url, servers[max(urls)])
    measure_marker_memory(result, redis_url)
    result.write_cost = run_write_cost(admin_url, redis_url)
    return result
