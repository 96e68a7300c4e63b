"""The fault matrix's verdict: what the traffic found, judged against Postgres' truth."""

import collections
from dataclasses import dataclass, field

from counts.postgres.queries import bumps

GOOD_STATUSES = frozenset({200, 201, 204, 304})


@dataclass
class Outcome:
    """One HTTP request the traffic sent, and what came of it."""

    client: str
    user: str | None  # whose counts a poll asked for
    kind: str  # poll, send, read, health, final
    phase: str
    started: float
    ended: float = 0.0
    status: int | None = None
    error: str | None = None  # dropped (no response), timeout, truncated, malformed
    detail: str = ""
    etag: str | None = None
    retried: bool = False  # its connection broke and it was sent once more
    dropped_ok: bool = False  # sent or in flight while the service was stopping: refusing it is fine
    unavailable_ok: bool = True  # a 503 with Retry-After is documented behaviour here

    @property
    def seconds(self) -> float:
        """How long the request took, as its client saw it."""
        return self.ended - self.started

    def problem(self) -> str | None:
        """What is wrong with this outcome by the fault matrix's rules, or None."""
        if self.retried or (self.error == "dropped" and self.dropped_ok):
            return None  # a retried request (the retry is judged on its own), or a stopping service
        if self.error is not None:
            return f"{self.kind} by {self.client} in {self.phase}: {self.error} {self.detail}"
        if self.kind == "final" and self.status not in (200, 304):
            return f"final poll by {self.client}: {self.status} {self.detail[:300]}"
        if self.status in GOOD_STATUSES or (self.status == 503 and self.unavailable_ok):
            return None
        return f"{self.kind} by {self.client} in {self.phase}: {self.status} {self.detail[:300]}"


@dataclass
class Figures:
    """What one fault test's traffic did and found."""

    name: str
    faults: int
    requests: int
    statuses: collections.Counter
    acked_writes: int
    clients: int
    retried: int
    stale: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        """One line to quote: faults, requests, statuses, stale clients, lost writes."""
        statuses = " ".join(f"{status}:{n}" for status, n in sorted(self.statuses.items(), key=str))
        return (f"{self.name}: faults={self.faults} requests={self.requests} ({statuses}) "
                f"acked_writes={self.acked_writes} clients={self.clients} retried={self.retried} "
                f"stale={len(self.stale)} lost={len(self.lost)} problems={len(self.problems)}")

    def check(self) -> None:
        """Fail the test on any stale client, lost write or broken rule, listing them all."""
        report = [*(f"STALE {s}" for s in self.stale), *(f"LOST {s}" for s in self.lost),
                  *self.problems]
        assert not report, f"{self.line()}\n" + "\n".join(report[:40])


def pending_bumps(pg) -> int:
    """Outbox rows still waiting for Redis."""
    with pg.cursor() as cur:
        return bumps.pending_bumps(cur)


def lost_writes(pg, messages: dict[str, str], reads: list[tuple[str, str, int]]) -> list[str]:
    """Acknowledged writes Postgres does not hold: messages missing, read states behind."""
    with pg.cursor() as cur:
        cur.execute("SELECT id::text FROM messages WHERE id = ANY(%s::uuid[])", (list(messages),))
        stored = {row[0] for row in cur.fetchall()}
        cur.execute("SELECT conversation_id::text, user_id::text, last_read_seq"
                    " FROM conversation_members")
        read_state = {(c, u): seq for c, u, seq in cur.fetchall()}
    lost = [f"message {m} in {c}" for m, c in messages.items() if m not in stored]
    lost += [f"read of {c} by {u} up to {seq} (Postgres: {read_state.get((c, u))})"
             for c, u, seq in reads if read_state.get((c, u), -1) < seq]
    return lost


def inconsistent_conversations(pg, conversation_ids: list[str]) -> list[str]:
    """Conversations whose messages are not exactly seqs 1..last_seq, or read past last_seq."""
    with pg.cursor() as cur:
        cur.execute("""
            SELECT c.id::text, c.last_seq, coalesce(max(m.seq), 0), count(m.seq)
            FROM conversations c LEFT JOIN messages m ON m.conversation_id = c.id
            WHERE c.id = ANY(%s::uuid[]) GROUP BY c.id
            HAVING c.last_seq <> coalesce(max(m.seq), 0) OR c.last_seq <> count(m.seq)
               OR bool_or(m.seq < 1)
        """, (conversation_ids,))
        problems = [f"conversation {c}: last_seq {last}, max seq {top}, {n} messages"
                    for c, last, top, n in cur.fetchall()]
        cur.execute("""
            SELECT m.conversation_id::text, m.user_id::text, m.last_read_seq, c.last_seq
            FROM conversation_members m JOIN conversations c ON c.id = m.conversation_id
            WHERE m.last_read_seq > c.last_seq AND c.id = ANY(%s::uuid[])
        """, (conversation_ids,))
        problems += [f"{u} read {c} up to {r}, past its last_seq {s}" for c, u, r, s in cur.fetchall()]
    return problems


def markers_gone_back(outcomes) -> list[str]:
    """Markers that came back to a user after the user had moved on to another (invariant 4).

    X, then Y, then X again, each seen strictly after the one before: a random marker cannot
    do that, a counter that restarted after Redis lost it (restart, flush, eviction) does,
    and then a device still holding X gets a 304 for counts that are no longer X's.
    """
    seen = collections.defaultdict(list)  # user -> [(started, ended, marker)]
    for o in outcomes:
        if o.user and o.etag and not o.etag.startswith('"nomarker-'):
            seen[o.user].append((o.started, o.ended, o.etag))
    problems = []
    for user, answers in seen.items():
        span = {}  # marker -> (first time it was surely current, last time it may have been)
        for started, ended, marker in answers:
            first, last = span.get(marker, (ended, started))
            span[marker] = (min(first, ended), max(last, started))
        for marker, (first, last) in span.items():
            between = {m for started, ended, m in answers
                       if m != marker and first < started and ended < last}
            if between:
                problems.append(f"{user[:8]}'s marker {marker} came back after {sorted(between)[0]}")
    return problems
