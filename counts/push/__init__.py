"""Push for apps in the background (DESIGN.md invariant 12).

- `devices`: the device registry (validation, the Web Push host allowlist, masked tokens).
- `jobs`: what a count-changing write records, in its own transaction, for the dispatcher.
- `payload`: what is pushed, built at send time from the user's *current* counts.
- `dispatcher`: the process that claims due jobs, pushes, retries and forgets gone devices;
  `plan` merges a round's jobs into one delivery per device; `backoff` leaves silent hosts
  alone; `receipts` reads what became of accepted pushes (Expo); `worker` runs it as a command.
- `providers/`: one module per push service behind one small interface (after Matrix Sygnal's
  pushkins): `webpush` (RFC 8030/8291/8292), `apns` (HTTP/2, token auth), `fcm` (HTTP v1),
  `expo` (Expo's push service, with tickets and receipts).
- `vapid`: the Web Push application server key.
"""
