"""Development tooling: embedded Postgres and Redis for `make run` and `make test` on a machine
without them, and private servers for tests and benchmarks. The service never imports it."""
