"""The simulator's world: users with tokens, 1:1 and group conversations, history and unread state.

Generated from a seed, so both passes of a run (and two runs) start from the same state; loaded
with COPY (conversations, members) and one server-side INSERT ... SELECT (messages).
"""

import random
import uuid
from dataclasses import dataclass, field

from bench import pg
from bench.services import JWT_SECRET
from counts.identity import mint_token

SENDER = "00000000-0000-4000-8000-000000000000"  # history's sender; the counts query never reads it


@dataclass
class World:
    """Users, conversations and read state as the simulator knows them (it is the only writer)."""

    users: list[str]
    tokens: list[str]
    conversations: list[str]
    members: list[list[int]]  # per conversation, indices into users
    last_seq: list[int]
    last_read: dict[tuple[int, int], int] = field(default_factory=dict)  # (conversation, user)

    def unread_pairs(self) -> list[tuple[int, int]]:
        """(conversation, user) pairs with something unread."""
        return [(c, u) for (c, u), seq in self.last_read.items() if seq < self.last_seq[c]]


def build_world(users: int, dms_per_user: int = 8, history: int = 10, unread_share: float = 0.3,
                seed: int = 1) -> World:
    """A deterministic world: each user in ~dms_per_user 1:1 chats and in about one group of 3-30."""
    rng = random.Random(seed)
    user_ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(users)]
    members: list[list[int]] = []
    pairs: set[tuple[int, int]] = set()
    for a in range(users):
        for _ in range(dms_per_user // 2):
            b = rng.randrange(users)
            pair = (min(a, b), max(a, b))
            if a != b and pair not in pairs:
                pairs.add(pair)
                members.append(list(pair))
    for _ in range(max(1, users // 15)):
        members.append(rng.sample(range(users), min(users, rng.randint(3, 30))))
    conversations = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in members]
    world = World(user_ids, [], conversations, members, [history] * len(members))
    for c, group in enumerate(members):
        for u in group:
            unread = rng.randint(1, history) if rng.random() < unread_share else 0
            world.last_read[(c, u)] = history - unread
    return world


def mint_tokens(world: World, ttl: int = 6 * 3600) -> None:
    """A user JWT for every user (what each simulated app holds)."""
    world.tokens = [mint_token(JWT_SECRET, uid, ttl=ttl) for uid in world.users]


def load_world(database_url: str, world: World) -> None:
    """Replace the database's contents with the world (COPY, then one INSERT ... SELECT)."""
    conn = pg.connect(database_url, autocommit=False)
    with conn.cursor() as cur:
        cur.execute("TRUNCATE conversations, conversation_members, messages, message_mentions, marker_outbox")
        pg.copy_rows(cur, "conversations", ("id", "last_seq"),
                     zip(world.conversations, world.last_seq, strict=True))
        # may_have_unread as the service's writes keep it (invariant 17): the counts query reads
        # only the flagged memberships, so a seed that left every row flagged would time the old,
        # every-membership query.
        pg.copy_rows(cur, "conversation_members",
                     ("conversation_id", "user_id", "last_read_seq", "may_have_unread"),
                     ((world.conversations[c], world.users[u], seq, seq < world.last_seq[c])
                      for (c, u), seq in world.last_read.items()))
        cur.execute("""
            INSERT INTO messages (conversation_id, seq, id, sender_id, body)
            SELECT c.id, s, md5(c.id::text || '/' || s)::uuid, %s, 'history ' || s
            FROM conversations c, generate_series(1, c.last_seq) s""", (SENDER,))
    conn.commit()
    conn.close()
    pg.admin(database_url, "VACUUM ANALYZE")
