"""The per-process objects the views and middleware share, built from the settings."""

from counts import markers, sources
from counts.bumps.drainer import Drainer
from counts.bumps.relay import Relay
from counts.identity import TokenVerifier
from counts.live.feed import Feed
from counts.markers.ratelimit import RateLimit
from counts.observability.load import LoadGauge
from counts.observability.logs import AccessLog
from counts.postgres.pool import Database
from counts.postgres.replicas import Postgres
from counts.push.queue import QueueStats
from counts.push.registry import Registry
from counts.settings import Settings


class Resources:
    """What the views need: Postgres (`db`, the primary; `postgres`, with its read replicas),
    the marker store (`redis`, whatever the topology), the token verifier and the settings.

    Nothing here opens a socket at construction: connections are made in the worker process
    that first uses them, after gunicorn has forked.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        # Where counts come from (own tables or the app's function), decided here, once.
        self.source = sources.from_settings(settings.source)
        pg = settings.postgres
        self.db = Database(pg.url, pg.timeout, pg.pool_size, schema=self.source.schema)
        self.postgres = Postgres(self.db, pg.replica_urls, pg.timeout, pg.pool_size,
                                 self.source.schema)
        self.redis = markers.connect(settings.redis.topology, settings.redis.timeout,
                                     settings.redis.pool_size)
        self.marker_ttl = settings.redis.marker_ttl
        self.tokens = TokenVerifier.from_settings(settings.identity)
        http = settings.http
        self.rate_limit = RateLimit(http.rate_limit, http.anonymous_rate_limit)
        self.load = LoadGauge(http.threads, http.poll_interval, http.busy_poll_factor)
        self.access_log = AccessLog(settings.server.log_level, settings.server.log_flush_seconds)
        self.push = Registry.from_settings(settings)
        self.feed = Feed(self.redis, self.marker_ttl, settings.live.max_streams,
                         settings.live.heartbeat)
        self.push_queue = QueueStats(self.db)
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

    def start_drainer(self) -> Drainer:
        """Start this process's outbox drainer thread (call once per worker, after fork)."""
        drainer = Drainer(self.db, self.redis, self.marker_ttl,
                          self.settings.bumps.drain_interval, wal=self.postgres.wal)
        drainer.start()
        return drainer

    def start_relay(self) -> Relay:
        """Start this process's LISTEN relay thread (attached mode; once per worker, after fork)."""
        relay = Relay(self.db, self.redis, self.marker_ttl, wal=self.postgres.wal)
        relay.start()
        return relay
