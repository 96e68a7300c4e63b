"""Bump after commit, and never lose a bump: the transactional outbox and what empties it.

- `outbox`: a write and its bumps in one transaction, the bump right after the commit.
- `drainer`: each worker's thread that bumps what the outbox still holds (Redis was down, a
  writer died between its commit and its bump).
- `relay`: attached mode's LISTEN relay, bumping what the app's SQL triggers recorded.
"""
