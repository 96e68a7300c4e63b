"""The Grafana dashboard: the seed's five metrics, then the service's health.

Plain dicts in Grafana's dashboard JSON model (schemaVersion 39). grafanalib (0.7.1, its
maintainer Weaveworks closed) lags that model, and Grafana's foundation SDK is a preview with
epoch-stamped versions; the JSON the panels need is small. The data source is
a variable, so the file imports (Dashboards > Import) and provisions (a file provider) as it is.
"""

from dataclasses import dataclass, field

from ops import queries as q

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
WIDTH, HEIGHT = 12, 8  # two panels a row

ENGAGEMENT = """\
**Engagement belongs to the app.** counts knows when a device polled, held a connection or was \
pushed to, not whether a person read anything: a read is the app's write (`POST \
/v1/conversations/{id}/read`, or its own table in attached mode). What counts gives the app to \
compute it is in docs/operations.md (The five metrics, 5)."""


@dataclass
class Panel:
    """A time series panel: a title, what it shows, its unit, and queries with their legends."""

    title: str
    description: str
    unit: str
    targets: list[tuple[str, str]] = field(default_factory=list)
    text: str = ""  # a text panel instead of a graph


FIVE_METRICS = [
    Panel("Push delivery success rate, by platform",
          "Accepted by the provider out of tried on live devices (retried and failed count "
          "against it; a gone device or an expired alert does not).", "percentunit",
          [(q.PUSH_SUCCESS, "{{provider}}")]),
    Panel("Push outcomes per minute, by platform",
          "Every outcome the dispatchers counted: accepted, retried, gone, failed, expired "
          "(and any outcome a provider adds, e.g. delivered by receipt).", "short",
          [(q.PUSH_OUTCOMES, "{{provider}} {{outcome}}")]),
    Panel("Delivery latency: commit to live frame written",
          "From the write's commit (the time its bump carries) to the counts written on a "
          "stream (sse, ws), or a held long-poll released to answer.", "s",
          [(q.LIVE_LATENCY[0.5], "p50 {{transport}}"), (q.LIVE_LATENCY[0.99], "p99 {{transport}}")]),
    Panel("Delivery latency: commit to push accepted",
          "From the push job's insertion in the write's transaction to the provider's "
          "acceptance (a coalesced push counts from its oldest write).", "s",
          [(q.PUSH_LATENCY[0.5], "p50"), (q.PUSH_LATENCY[0.99], "p99")]),
    Panel("Battery: wake-ups per active device per hour",
          "Live: events and heartbeats written per open stream. Long-poll: answers per held "
          "connection. Polling: one per poll interval asked (X-Poll-Interval). Push: pushes "
          "accepted per registered device.", "short",
          [(expression, transport) for transport, expression in q.WAKEUPS_PER_DEVICE.items()]),
    Panel("Battery: requests and wake-ups per hour, all devices",
          "Requests devices made (polls, long-polls, streams opened) and wake-ups the service "
          "caused (push: pushes accepted), by transport.", "short",
          [(q.REQUESTS_PER_HOUR, "requests {{transport}}"),
           (q.WAKEUPS_PER_HOUR, "wake-ups {{transport}}")]),
    Panel("Database reads per second",
          "Statements the API sent to Postgres (the counts reads, and the writes' own "
          "statements), and the reads its 304s answered from Redis alone.", "reqps",
          [(q.PG_READS, "Postgres statements"), (q.PG_READS_SAVED, "saved by 304s")]),
    Panel("Engagement", "", "", text=ENGAGEMENT),
]

HEALTH = [
    Panel("Polls answered 304 (from Redis alone)", "Share of counts GETs answered 304.",
          "percentunit", [(q.NOT_MODIFIED_SHARE, "304 share")]),
    Panel("Postgres reads per poll",
          "Statements the API sent per counts GET (a 304 sends none; writes' statements count "
          "too, so a quiet hour shows the reads alone).", "short",
          [(q.READS_PER_POLL, "reads per poll")]),
    Panel("Live connections, by transport", "Long-polls held and streams open.", "short",
          [(q.LIVE_CONNECTIONS, "{{transport}}")]),
    Panel("Push queue", "Age of the oldest queued push job's write, and jobs queued.", "s",
          [(q.QUEUE_AGE, "oldest job age"), (q.QUEUE_DEPTH, "jobs queued")]),
    Panel("HTTP latency, by route", "Time to answer, p50 and p99.", "s",
          [(q.HTTP_LATENCY[0.5], "p50 {{route}}"), (q.HTTP_LATENCY[0.99], "p99 {{route}}")]),
    Panel("Replica use", "Reads a replica answered, and why the primary answered the others.",
          "reqps", [(q.REPLICA_USE, "{{outcome}}")]),
    Panel("5xx share", "Share of the API's answers that were 5xx.", "percentunit",
          [(q.ERROR_SHARE, "5xx")]),
    Panel("Redis errors per second, and dependencies down",
          "Redis calls that failed, by operation; 1 while a dependency's last call failed.",
          "short", [(q.REDIS_ERRORS_BY_OPERATION, "errors {{operation}}"),
                    (q.DEPENDENCIES_DOWN, "down {{dependency}}")]),
]


def render(panel: Panel, panel_id: int, x: int, y: int) -> dict:
    """One panel in Grafana's JSON model."""
    common = {"id": panel_id, "title": panel.title, "description": panel.description,
              "gridPos": {"x": x, "y": y, "w": WIDTH, "h": HEIGHT}}
    if panel.text:
        return {**common, "type": "text", "options": {"mode": "markdown", "content": panel.text}}
    return {**common, "type": "timeseries", "datasource": DATASOURCE,
            "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                        "tooltip": {"mode": "multi", "sort": "desc"}},
            "targets": [{"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr,
                         "legendFormat": legend, "range": True}
                        for i, (expr, legend) in enumerate(panel.targets)]}


def dashboard() -> dict:
    """The whole dashboard: a row per section, two panels a row."""
    panels, y, next_id = [], 0, 1
    for title, section in (("The five metrics", FIVE_METRICS), ("Health", HEALTH)):
        panels.append({"id": next_id, "type": "row", "title": title, "collapsed": False,
                       "gridPos": {"x": 0, "y": y, "w": 2 * WIDTH, "h": 1}, "panels": []})
        next_id, y = next_id + 1, y + 1
        for i, panel in enumerate(section):
            panels.append(render(panel, next_id, (i % 2) * WIDTH, y + (i // 2) * HEIGHT))
            next_id += 1
        y += (len(section) + 1) // 2 * HEIGHT
    return {
        "uid": "counts", "title": "counts", "tags": ["counts"], "editable": True,
        "schemaVersion": 39, "version": 1, "refresh": "30s", "timezone": "utc",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [{"name": "datasource", "label": "Prometheus", "type": "datasource",
                                 "query": "prometheus", "current": {}, "hide": 0}]},
        "annotations": {"list": []},
        "panels": panels,
    }


def expressions() -> list[str]:
    """Every query of every panel (what the tests run against a real Prometheus)."""
    return [expr for section in (FIVE_METRICS, HEALTH) for panel in section
            for expr, _ in panel.targets]
