"""The per-app resources the views and middleware share: Postgres, Redis, tokens, limits, logs."""

from typing import Any

from counts import markers, source
from counts.admin import QueueStats, read_queue_stats
from counts.auth import TokenVerifier
from counts.db import Database
from counts.live.feed import Feed
from counts.load import LoadGauge
from counts.logs import AccessLog
from counts.push.devices import Registry
from counts.ratelimit import RateLimit
from counts.replicas import Postgres


class Resources:
    """What the views need: Postgres (`db`, the primary; `postgres`, with its read replicas),
    the marker store (`redis`, whatever the topology), the token verifier and the settings.

    Nothing here opens a socket at construction: connections are made in the worker process
    that first uses them, after gunicorn has forked.
    """

    def __init__(self, config: dict[str, Any]):
        # Where counts come from (own tables or the app's function), decided here, once.
        self.source = source.from_config(config)
        self.db = Database(config["DATABASE_URL"], config["PG_TIMEOUT"], config["PG_POOL_SIZE"],
                           schema=self.source.schema)
        self.postgres = Postgres(self.db, config.get("DATABASE_REPLICA_URLS", []),
                                 config["PG_TIMEOUT"], config["PG_POOL_SIZE"], self.source.schema)
        self.redis = markers.connect(config["REDIS_URL"], config["REDIS_TIMEOUT"],
                                     config["REDIS_POOL_SIZE"])
        self.tokens = TokenVerifier.from_config(config)
        self.marker_ttl: int = config["MARKER_TTL"]
        self.rate_limit = RateLimit(config["RATE_LIMIT"], config["ANONYMOUS_RATE_LIMIT"])
        self.load = LoadGauge(config["THREADS"], config["POLL_INTERVAL"],
                              config["BUSY_POLL_FACTOR"])
        self.retry_after: int = config["RETRY_AFTER"]
        self.drain_interval: float = config["OUTBOX_DRAIN_INTERVAL"]
        self.access_log = AccessLog(flush_interval=config["LOG_FLUSH_INTERVAL"])
        self.push = Registry.from_config(config)
        self.max_wait: int = config["MAX_WAIT"]
        self.stream_shutdown_seconds: float = config["STREAM_SHUTDOWN_SECONDS"]
        self.stream_heartbeat: float = config["STREAM_HEARTBEAT"]
        self.stream_ticket_ttl: int = config["STREAM_TICKET_TTL"]
        self.ws_ping_interval: float = config["WS_PING_INTERVAL"]
        self.feed = Feed(self.redis, self.marker_ttl, config["MAX_STREAMS"],
                         config["STREAM_HEARTBEAT"])
        self.push_queue = QueueStats(read_queue_stats(self.db))
        self.admin_bind: str | None = config["ADMIN_BIND"]
        # The admin listener's port (or unix path), once the worker knows its sockets.
        self.admin_listener: int | str | None = None

    def close(self) -> None:
        """Flush the access log; stop the JWKS refresher; close pooled Postgres connections and
        Redis sockets (worker exit, tests)."""
        self.access_log.close()
        self.tokens.close()
        self.feed.stop()
        self.db.close()
        self.postgres.close()
        self.redis.close()

    def start_drainer(self):
        """Start this process's outbox drainer thread (call once per worker, after fork)."""
        from counts.outbox import Drainer

        drainer = Drainer(self.db, self.redis, self.marker_ttl, self.drain_interval,
                          wal=self.postgres.wal)
        drainer.start()
        return drainer

    def start_relay(self):
        """Start this process's LISTEN relay thread (attached mode; once per worker, after fork)."""
        from counts.relay import Relay

        relay = Relay(self.db, self.redis, self.marker_ttl, wal=self.postgres.wal)
        relay.start()
        return relay
