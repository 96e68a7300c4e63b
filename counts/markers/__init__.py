"""Everything counts keeps in Redis: the markers above all, and what rides on the same keyspace.

- `keys`: every key and channel, built in one place.
- `scripts`: the marker scripts (Lua), as redis-py Script objects.
- `store`: read a marker (or many), bump markers after a write, confirm LSN records, keep a
  live feed's listen flags (a bump publishes only to users listened to); the
  functions below are the store's.
- `topology`: one Redis, a Sentinel-managed primary, or a Cluster: connections, and which server
  holds which users.
- `presence`: who has a live stream open (for push).
- `ratelimit`: per-user and per-IP request counters.
- `sendrate`: a push provider's send rate across dispatchers (Expo's 600 a second).
"""

from counts.markers.store import (
    MarkerRead,
    PartialBump,
    Wal,
    bump,
    connect,
    keep_listening,
    lsn_hex,
    new_marker,
    read,
    read_markers_and_lsns,
)

__all__ = ["MarkerRead", "PartialBump", "Wal", "bump", "connect", "keep_listening", "lsn_hex",
           "new_marker", "read", "read_markers_and_lsns"]
