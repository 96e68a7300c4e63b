"""The service on replicated setups the tests start: a Redis Cluster, Redis Sentinel, and a
Postgres streaming replica."""
