"""Every SQL statement the service sends, one module per concern, and the small functions that send them.

- `reads`: the unread counts of one user or many; the readiness ping.
- `conversations`: count-changing writes of our own schema (conversations, members, messages,
  mentions, threads).
- `members`: a member's notify level and mark-as-unread; a user's badge policy.
- `bumps`: the marker outbox (bumps recorded in the writing transaction, drained later) and
  the channel counts.bump() notifies.
- `attached`: the app's unread function (attached mode): calling it, checking it at start-up.
- `push`: the device registry, the push job queue, the dispatcher's leases.
- `tickets`: push tickets kept until their receipts are read (Expo).
- `migrations`: the record of applied schema migrations.
- `session`: settings our connections make once (attached mode's search_path).

Functions take a cursor and know nothing of Flask, so tests and other services can call them.
"""
