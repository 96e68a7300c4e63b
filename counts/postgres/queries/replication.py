"""WAL positions: where the primary's WAL is now, and how far a replica has replayed it."""

# The insert position, not pg_current_wal_lsn() (the write position): after a commit it is past
# the commit record of every transaction any session can see, even one committed with
# synchronous_commit = off, whose record may not be written out yet.
WAL_POSITION = "SELECT pg_current_wal_insert_lsn()::text"

# NULL on a server that is not in recovery (a primary, or a promoted replica).
REPLAYED_POSITION = "SELECT pg_last_wal_replay_lsn()::text"


def lsn_int(text: str) -> int:
    """A pg_lsn's text ("16/B374D848") as the byte position it names."""
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


def wal_position(cur) -> int:
    """The primary's WAL insert position now (an error on a replica)."""
    cur.execute(WAL_POSITION)
    return lsn_int(cur.fetchone()[0])


def replayed_position(cur) -> int | None:
    """How far this replica has replayed the primary's WAL; None if it is not a replica."""
    cur.execute(REPLAYED_POSITION)
    position = cur.fetchone()[0]
    return None if position is None else lsn_int(position)
