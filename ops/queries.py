"""The PromQL behind the dashboard and the alerts.

Prometheus is assumed to scrape the API's operators' address (COUNTS_ADMIN_BIND) as job `counts`
and each push dispatcher (COUNTS_PUSH_METRICS_PORT) as job `counts-push`: both expose some of the
same names (a dispatcher queries Postgres too), so each query names the job it is about.

A counter with labels has no series until its first increment, so a ratio whose numerator may
never have happened says so with `or`: a quiet service shows 0, not "no data", and a provider
whose every push failed shows a success rate of 0 instead of vanishing from the alert.
"""

API = 'job="counts"'
PUSH = 'job="counts-push"'
WINDOW = "5m"
COUNTS_ROUTE = 'route="/v1/users/<user_id>/unread-counts"'


def sel(name: str, *matchers: str) -> str:
    """A series selector."""
    return f"{name}{{{','.join(matchers)}}}" if matchers else name


def rate(name: str, *matchers: str, window: str = WINDOW) -> str:
    """Per-second rate of a counter over the window."""
    return f"rate({sel(name, *matchers)}[{window}])"


def total(name: str, *matchers: str, by: str = "") -> str:
    """The rate of a counter summed over instances (and kept apart `by` some labels)."""
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} ({rate(name, *matchers)})"


def quantile(q: float, histogram: str, *matchers: str, by: str = "") -> str:
    """The q-quantile of a histogram's observations over the window, optionally per label."""
    buckets = total(histogram + "_bucket", *matchers, by="le, " + by if by else "le")
    return f"histogram_quantile({q}, {buckets})"


def zero_if_none(expression: str) -> str:
    """The expression, or 0 when no series exists yet (nothing happened)."""
    return f"({expression} or vector(0))"


# 1. Push delivery success rate: what the providers accepted of what was tried on live devices
# (retried and failed count against it; gone devices and expired alerts do not).
PUSH_SUCCESS = (
    "(" + total("counts_push_sent_total", PUSH, 'outcome="accepted"', by="provider")
    + " or 0 * " + total("counts_push_sent_total", PUSH, by="provider") + ") / "
    + total("counts_push_sent_total", PUSH, 'outcome=~"accepted|retried|failed"', by="provider"))
PUSH_OUTCOMES = "60 * " + total("counts_push_sent_total", PUSH, by="provider, outcome")

# 2. Message delivery latency: commit to live frame written; commit to the provider's acceptance.
LIVE_LATENCY = {q: quantile(q, "counts_live_latency_seconds", API, by="transport")
                for q in (0.5, 0.99)}
PUSH_LATENCY = {q: quantile(q, "counts_push_latency_seconds", PUSH) for q in (0.5, 0.99)}


def _per_connected_device(transport: str) -> str:
    """Wake-ups per hour per connection the service held on `transport` (window average)."""
    matchers = (API, f'transport="{transport}"')
    connected = f"avg_over_time({sel('counts_live_connections', *matchers)}[{WINDOW}])"
    return f"3600 * {total('counts_wakeups_total', *matchers)} / sum({connected})"


# 3. Battery: wake-ups per active device per hour. A connected device is one the service holds a
# connection for; a polling device wakes once per interval it is asked to poll at; a push device
# is one registered.
WAKEUPS_PER_DEVICE = {
    "live": _per_connected_device("live"),
    "long_poll": _per_connected_device("long_poll"),
    "polling": f"3600 / max({sel('counts_poll_interval_seconds', API)})",
    # Pushes accepted over the devices registered (every process reads the same count).
    "push": ("3600 * " + total("counts_wakeups_total", PUSH, 'transport="push"')
             + " / sum(max by (platform) (counts_push_devices))"),
}
REQUESTS_PER_HOUR = "3600 * " + total("counts_device_requests_total", API, by="transport")
WAKEUPS_PER_HOUR = "3600 * " + total("counts_wakeups_total", by="transport")  # push: dispatchers'

# 4. Database reads, and the reads the 304s saved.
PG_READS = total("counts_postgres_queries_total", API)
PG_READS_SAVED = total("counts_http_requests_total", API, COUNTS_ROUTE, 'status="304"')

# Health.
NOT_MODIFIED_SHARE = (zero_if_none(PG_READS_SAVED) + " / "
                      + total("counts_http_requests_total", API, COUNTS_ROUTE, 'status=~"200|304"'))
READS_PER_POLL = PG_READS + " / " + total("counts_http_requests_total", API, COUNTS_ROUTE)
LIVE_CONNECTIONS = f"sum by (transport) ({sel('counts_live_connections', API)})"
QUEUE_AGE = "max(counts_push_oldest_job_age_seconds)"
QUEUE_DEPTH = "max(counts_push_queue_depth)"
HTTP_LATENCY = {q: quantile(q, "counts_http_request_duration_seconds", API, by="route")
                for q in (0.5, 0.99)}
REPLICA_USE = total("counts_replica_reads_total", API, by="outcome")
REPLICA_LAGGING_SHARE = (
    zero_if_none(total("counts_replica_reads_total", API, 'outcome="primary_lagging"'))
    + " / " + total("counts_replica_reads_total", API))
ERROR_SHARE = (zero_if_none(total("counts_http_requests_total", API, 'status=~"5.."'))
               + " / " + total("counts_http_requests_total", API))
REDIS_ERRORS = zero_if_none(total("counts_redis_errors_total"))
REDIS_ERRORS_BY_OPERATION = zero_if_none(total("counts_redis_errors_total", by="operation"))
DEPENDENCIES_DOWN = f"max by (dependency) ({sel('counts_dependency_unavailable', API)})"
