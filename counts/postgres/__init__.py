"""Postgres, where the truth is: connections, replicas, every SQL statement, the migrations.

- `pool`: the only code that opens, lends and closes connections (with timeouts).
- `replicas`: the primary and its read replicas: "a database that has seen LSN x".
- `listen`: one LISTEN loop, for whoever waits on a NOTIFY channel (the relay, the dispatcher).
- `queries/`: every statement the service sends, one module per concern.
- `migrations/`: the versioned schema, per mode.
"""
