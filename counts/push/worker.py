"""`flask --app app push-worker`: one dispatcher process, its metrics, and a clean stop."""

import logging
import signal
from functools import partial

from prometheus_client import REGISTRY, start_http_server

from counts import markers, sources
from counts.markers import presence, sendrate
from counts.observability import metrics
from counts.postgres.pool import Database
from counts.push import providers
from counts.push.dispatcher import Dispatcher
from counts.push.queue import QueueCollector, QueueStats
from counts.settings import Settings

log = logging.getLogger(__name__)

APPLICATION_NAME = "counts-push"  # the dispatcher's sessions in pg_stat_activity


def make_dispatcher(settings: Settings) -> Dispatcher:
    """A dispatcher with its own connections (a LISTEN, a round, a read) and the configured providers."""
    counts_source = sources.from_settings(settings.source)
    db = Database(settings.postgres.url, settings.postgres.timeout, 3, schema=counts_source.schema,
                  application_name=APPLICATION_NAME)
    client = markers.connect(settings.redis.topology, settings.redis.timeout,
                             settings.redis.pool_size)
    return Dispatcher(db, providers.build(settings), settings.push,
                      partial(presence.live_devices, client), counts_source.unread_counts,
                      partial(sendrate.reserve, client))


def run_worker(settings: Settings) -> None:
    """Push until SIGTERM/SIGINT; the round in flight is finished and committed first."""
    dispatcher = make_dispatcher(settings)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: dispatcher.stop())
    push = settings.push
    if push.metrics_port:
        metrics.push_providers(dispatcher.providers)
        REGISTRY.register(QueueCollector(QueueStats(dispatcher.db)))
        start_http_server(push.metrics_port, addr=push.metrics_host)
        log.info("push metrics on http://%s:%d/metrics", push.metrics_host, push.metrics_port)
    log.info("push dispatcher started (providers: %s)", ", ".join(sorted(dispatcher.providers)) or "none")
    try:
        dispatcher.run()
    finally:
        dispatcher.close()
        dispatcher.db.close()
        log.info("push dispatcher stopped")
