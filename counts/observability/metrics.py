"""Prometheus metrics, correct under several gunicorn workers (prometheus-client multiprocess mode).

gunicorn.conf.py points PROMETHEUS_MULTIPROC_DIR at a fresh directory before any worker imports
this module; each worker then writes its samples to files there, and /metrics sums them.
"""

from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

REQUESTS = Counter("counts_http_requests_total", "HTTP requests answered, by route template and status.",
                   ["route", "method", "status"])
REQUEST_SECONDS = Histogram("counts_http_request_duration_seconds", "Time to answer a request.",
                            ["route"], buckets=LATENCY_BUCKETS)
PG_QUERIES = Counter("counts_postgres_queries_total", "Statements sent to Postgres.")
PG_QUERY_SECONDS = Histogram("counts_postgres_query_duration_seconds", "Time per Postgres statement.",
                             buckets=LATENCY_BUCKETS)
REDIS_ERRORS = Counter("counts_redis_errors_total", "Redis calls that failed (the service degraded).",
                       ["operation"])
MARKERS_CREATED = Counter("counts_markers_created_total",
                          "Markers created because none was found: new users, TTL, or Redis lost data.")
BUMPS = Counter("counts_bumps_total", "Bump operations (one Redis round trip each).")
BUMPED_USERS = Histogram("counts_bump_fanout_users", "Users bumped per bump operation.",
                         buckets=(1, 2, 5, 10, 50, 100, 1000, 10000))
DEGRADED = Gauge("counts_dependency_unavailable", "1 while a dependency's last call failed.",
                 ["dependency"], multiprocess_mode="livemax")
REPLICA_READS = Counter(
    "counts_replica_reads_total",
    "Reads a Postgres replica could have answered, by who did: replica, or the primary because "
    "the user's WAL position is unknown (primary_no_lsn), the replica had not replayed it "
    "(primary_lagging) or it failed (primary_replica_down).", ["outcome"])
RATE_LIMITED = Counter("counts_rate_limited_total", "Requests refused with 429.", ["subject"])
# 1 in a worker whose last JWKS fetch left it without any key; 0 (the default, also in workers
# that never fetched) otherwise: the most over the workers says whether any of them lacks keys.
JWKS_KEYLESS = Gauge("counts_jwks_keyless", "1 while this worker holds no key from the JWKS.",
                     multiprocess_mode="livemax")
JWKS_FETCHES = Counter("counts_jwks_fetches_total",
                       "Fetches of the identity provider's JWKS (COUNTS_JWKS_URL), by outcome.",
                       ["outcome"])
# Push (counts.push.dispatcher). outcome: accepted, retried, gone, failed, expired, withheld; and
# delivered, from a provider's receipt (Expo's), for pushes accepted earlier.
PUSH_SENT = Counter("counts_push_sent_total", "Pushes the dispatcher dealt with, by provider and outcome.",
                    ["provider", "outcome"])
PUSH_LATENCY = Histogram("counts_push_latency_seconds",
                         "From the write that queued a push (in its transaction) to its acceptance.",
                         buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0))
PUSH_RECEIPT_ERRORS = Counter(
    "counts_push_receipt_errors_total", "Receipts (and tickets) reporting an error, by provider "
    "and its error: DeviceNotRegistered, MessageRateExceeded, MessageTooBig, MismatchSenderId, "
    "InvalidCredentials...", ["provider", "error"])
PUSH_RECEIPTS_UNFETCHED = Counter(
    "counts_push_receipts_unfetched_total", "Tickets whose receipt was not read before the "
    "provider forgot it (24 h at Expo): dropped.", ["provider"])

LIVE_WAITERS = Gauge("counts_live_connections",
                     "Connections waiting for a change, by transport: long_poll, live (SSE, WebSocket).",
                     ["transport"], multiprocess_mode="livesum")
LIVE_LATENCY = Histogram(
    "counts_live_latency_seconds",
    "From a write's commit (as its bump says) to its counts written on a live connection, by "
    "transport: sse, ws, long_poll (released to answer).", ["transport"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0))
# Battery: what each way of staying current costs a device, from the service's side.
DEVICE_REQUESTS = Counter(
    "counts_device_requests_total",
    "Requests devices made to stay current, by transport: polling, long_poll, live (a stream opened).",
    ["transport"])
WAKEUPS = Counter(
    "counts_wakeups_total",
    "Times the service woke a device's radio, by transport: polling and long_poll (each answer), "
    "live (each event or heartbeat written), push (each push a provider accepted).", ["transport"])
LIVE_EVENTS = Counter("counts_live_events_total", "Counts sent on streams (SSE events, WebSocket frames).",
                      ["transport"])
FEED_RESUBSCRIBED = Counter("counts_feed_resubscribed_total",
                            "Times a worker's feed subscriber (re)connected and re-checked every waiter.")
UNKNOWN_NOTIFY_LEVELS = Counter("counts_unknown_notify_levels_total",
                                "Rows of the app's unread function with a notify level counts does "
                                "not know (counted as 'all').")

# Labelled series exist from the start, at 0: a rate needs a sample from before the first event,
# so a series born at its first increment shows (and alerts on) nothing until its second.
for _transport in ("sse", "ws", "long_poll"):
    LIVE_LATENCY.labels(_transport)
for _transport in ("live", "long_poll"):
    LIVE_WAITERS.labels(_transport)
for _transport in ("polling", "long_poll", "live"):
    DEVICE_REQUESTS.labels(_transport)
    WAKEUPS.labels(_transport)
PUSH_OUTCOMES = ("accepted", "retried", "gone", "failed", "expired")

_degraded: dict[str, bool] = {}


def dependency_state(dependency: str, available: bool) -> None:
    """Record whether `dependency` answered; touches the gauge only when the state flips."""
    if _degraded.get(dependency) is not (not available):
        _degraded[dependency] = not available
        DEGRADED.labels(dependency).set(0 if available else 1)


def redis_failed(operation: str) -> None:
    """Count a failed Redis call and mark Redis degraded."""
    REDIS_ERRORS.labels(operation).inc()
    dependency_state("redis", available=False)


def jwks_fetched(ok: bool, keys: int) -> None:
    """Count a JWKS fetch and the keys held after it; a failed one marks the JWKS degraded until
    one succeeds."""
    JWKS_FETCHES.labels("ok" if ok else "error").inc()
    JWKS_KEYLESS.set(0 if keys else 1)
    dependency_state("jwks", available=ok)


def push_sent(provider: str, outcome: str) -> None:
    """Count one push's outcome (an accepted one will wake its device)."""
    PUSH_SENT.labels(provider, outcome).inc()
    if outcome == "accepted":
        WAKEUPS.labels("push").inc()


def poll_interval(seconds: int) -> GaugeMetricFamily:
    """The poll interval clients are asked for (X-Poll-Interval), when workers are not saturated:
    a polling device's wake-ups per hour are 3,600 over it."""
    return GaugeMetricFamily("counts_poll_interval_seconds",
                             "The poll interval clients are asked for when the service is not busy.",
                             seconds)


def push_providers(providers: Iterable[str]) -> None:
    """Give each provider a dispatcher pushes through its outcome series (and push wake-ups), at 0."""
    WAKEUPS.labels("push")
    for provider in providers:
        for outcome in PUSH_OUTCOMES:
            PUSH_SENT.labels(provider, outcome)


def push_devices(by_platform: dict[str, int]) -> GaugeMetricFamily:
    """Devices registered for push, by platform, read from Postgres at scrape time."""
    family = GaugeMetricFamily("counts_push_devices", "Devices registered for push, by platform.",
                               labels=["platform"])
    for platform, devices in sorted(by_platform.items()):
        family.add_metric([platform], devices)
    return family


def push_receipt_error(provider: str, error: str) -> None:
    """Count a receipt error (or a ticket's) by its provider's code."""
    PUSH_RECEIPT_ERRORS.labels(provider, error).inc()


def push_queue(depth: int, oldest_seconds: float) -> list[GaugeMetricFamily]:
    """The push queue's gauges, read from Postgres at scrape time (any process can)."""
    return [GaugeMetricFamily("counts_push_queue_depth", "Push jobs waiting (due or not).", depth),
            GaugeMetricFamily("counts_push_oldest_job_age_seconds",
                              "Age of the oldest queued push job's write.", oldest_seconds)]


def across_workers(metrics_dir: str | None, name: str,
                   labels: dict[str, str] | None = None) -> float | None:
    """A gauge as every live gunicorn worker's samples add up (its multiprocess mode: the fewest,
    the most...), or None outside gunicorn or when no worker has set it."""
    if metrics_dir is None:
        return None
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=metrics_dir)
    value = registry.get_sample_value(name, labels or {})
    return value


class _Families:
    """A collector of metric families made for one scrape."""

    def __init__(self, families: list):
        self.families = families

    def collect(self) -> list:
        return self.families


def exposition(metrics_dir: str | None, extra: list | None = None) -> tuple[bytes, str]:
    """The Prometheus text for this service: every worker's samples (summed from `metrics_dir`)
    under gunicorn, plus `extra` families computed for this scrape."""
    if metrics_dir is not None:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=metrics_dir)
        text = generate_latest(registry)
    else:
        text = generate_latest(REGISTRY)
    if extra:
        scrape = CollectorRegistry()
        scrape.register(_Families(extra))
        text += generate_latest(scrape)
    return text, CONTENT_TYPE_LATEST
