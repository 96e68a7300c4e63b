"""Battery impact per strategy (issue 17): requests and wake-ups per device per hour for the
seed's users, from the service's own counters (the operators' /metrics) around the live window.

Live streams and long-polls are measured: the counters' growth over the window, over the
connections the service held. A stream's wake-ups are its counts events (as many as the writes
cause) and its keep-alives (heartbeats, pings: a fixed rate); a long-poll's are its 200s (changes)
and 304s (waits that ran out). Writes run at the seed's rate x time compression, so the figure
"at the seed's rate" divides the changes by the compression and keeps the keep-alives. Polling
costs one request and one wake-up per interval, changes or not; a push wakes a device at most
once per count change while it is away (coalescing and live presence lower it).
"""

import requests
from prometheus_client.parser import text_string_to_metric_families

COUNTS_ROUTE = "/v1/users/<user_id>/unread-counts"


def counters(metrics_url: str) -> dict[str, float]:
    """The counters and gauges the battery figure needs, keyed `name` or `name:label`."""
    text = requests.get(f"{metrics_url}/metrics", timeout=10).text
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name in ("counts_wakeups_total", "counts_device_requests_total",
                               "counts_live_connections"):
                key = f"{sample.name}:{labels['transport']}"
            elif sample.name == "counts_live_events_total":
                key = sample.name
            elif sample.name == "counts_http_requests_total" and labels["route"] == COUNTS_ROUTE:
                key = f"{sample.name}:{labels['status']}"
            else:
                continue
            found[key] = found.get(key, 0.0) + sample.value
    return found


def growth(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Each counter's growth (gauges: their value at the end)."""
    return {key: value - (0.0 if key.startswith("counts_live_connections") else before.get(key, 0.0))
            for key, value in after.items()}


def per_device_hour(grown: dict[str, float], seconds: float, compression: float,
                    poll_interval: float, changes_per_user: float) -> list[list[str]]:
    """Rows: strategy, devices, requests and wake-ups per device per hour as measured, and
    wake-ups per device per hour at the seed's rate."""
    hour = 3600 / max(seconds, 1e-9)
    rows = []
    for transport, label in (("live", "live (SSE, WebSocket)"), ("long_poll", "long-poll")):
        devices = grown.get(f"counts_live_connections:{transport}", 0.0)
        if not devices:
            continue
        wakeups = grown.get(f"counts_wakeups_total:{transport}", 0.0)
        requests_ = grown.get(f"counts_device_requests_total:{transport}", 0.0)
        if transport == "live":
            changes = grown.get("counts_live_events_total", 0.0)
        else:
            changes = grown.get("counts_http_requests_total:200", 0.0)
        seed = (changes / compression + (wakeups - changes)) / devices * hour
        rows.append([label, f"{devices:,.0f}", f"{requests_ / devices * hour:,.1f}",
                     f"{wakeups / devices * hour:,.1f}", f"{seed:,.1f}"])
    polls = 3600 / poll_interval
    rows.append([f"polling every {poll_interval:g} s", "(each)", f"{polls:,.0f}", f"{polls:,.0f}",
                 f"{polls:,.0f}"])
    pushes = changes_per_user * hour
    rows.append(["push (at most one per count change)", "(each)", "0", f"{pushes:,.1f}",
                 f"{pushes / compression:,.1f}"])
    return rows
