"""Operating it: /metrics under two gunicorn workers after known traffic, and JSON logs."""

import json
import os
import re

import pytest
import requests

from counts.observability.logs import JsonFormatter
from tests.support import ROOT
from tests.support.api import new_user
from tests.support.services import Gunicorn, wait_until

COUNTS_ROUTE = "/v1/users/<user_id>/unread-counts"


@pytest.fixture
def observed_server(server_env, tmp_path, pg, redis_client):
    """The service under 2 workers, a tight rate limit, its logs captured to a file.

    Request lines are flushed only when a worker stops (not by the periodic flusher), so the log
    test shows that stopping loses none.
    """
    log_path = tmp_path / "server.log"
    env = {**server_env, "COUNTS_RATE_LIMIT": "20", "COUNTS_LOG_FLUSH_SECONDS": "3600"}
    server = Gunicorn(env, workers=2, log_path=log_path).start()
    yield server, log_path
    server.stop()


def samples(text: str) -> dict[str, float]:
    """Prometheus text -> {'name{labels}': value} (labels sorted as the library writes them)."""
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            found[key] = float(value)
    return found


def sample(found: dict, name: str, **labels) -> float:
    """One sample's value, 0 if absent; label order does not matter."""
    wanted = {f'{k}="{v}"' for k, v in labels.items()}
    for key, value in found.items():
        metric, _, rest = key.partition("{")
        if metric == name and set(filter(None, rest.rstrip("}").split(","))) == wanted:
            return value
    return 0.0


def test_metrics_count_known_traffic_across_two_workers(observed_server, tokens):
    server, _ = observed_server
    alice, bob = new_user(), new_user()
    http = requests.Session()
    service = tokens.service()
    created = http.post(f"{server.url}/v1/conversations", headers=service, timeout=10,
                        json={"member_ids": [str(alice), str(bob)]})
    conversation = created.json()["conversation_id"]
    for _ in range(3):
        sent = http.post(f"{server.url}/v1/conversations/{conversation}/messages", timeout=10,
                         headers=service, json={"sender_id": str(alice), "body": "hi"})
        assert sent.status_code == 201
    url = f"{server.url}/v1/users/{bob}/unread-counts"
    first = http.get(url, headers=tokens.user(bob), timeout=10)
    assert first.status_code == 200
    not_modified = [http.get(url, timeout=10, headers={**tokens.user(bob),
                                                       "If-None-Match": first.headers["ETag"]})
                    for _ in range(12)]
    assert {r.status_code for r in not_modified} == {304}
    limited = [http.get(url, headers=tokens.user(bob), timeout=10) for _ in range(8)]
    statuses = [r.status_code for r in limited]
    assert set(statuses) == {200, 429} and statuses == sorted(statuses)  # refused once over
    assert http.get(f"{server.url}/no/such/path", timeout=10).status_code == 404
    newcomer = new_user()  # nobody bumped them yet: their marker is created by this poll
    assert http.get(f"{server.url}/v1/users/{newcomer}/unread-counts", timeout=10,
                    headers=tokens.user(newcomer)).status_code == 200

    found = samples(http.get(f"{server.admin_url}/metrics", timeout=10).text)
    assert sample(found, "counts_http_requests_total", route=COUNTS_ROUTE, method="GET",
                  status="304") == 12
    ok = sample(found, "counts_http_requests_total", route=COUNTS_ROUTE, method="GET", status="200")
    refused = sample(found, "counts_http_requests_total", route=COUNTS_ROUTE, method="GET",
                     status="429")
    assert ok + refused == 10 and refused == statuses.count(429) >= 1
    assert sample(found, "counts_rate_limited_total", subject="user") == refused
    assert sample(found, "counts_http_requests_total", route="/v1/conversations/<conversation_id>"
                  "/messages", method="POST", status="201") == 3
    assert sample(found, "counts_http_requests_total", route="unmatched", method="GET",
                  status="404") == 1
    assert sample(found, "counts_http_request_duration_seconds_count", route=COUNTS_ROUTE) == 22
    # 200s query Postgres; 304s and 429s do not. Writes send several statements each.
    assert sample(found, "counts_postgres_queries_total") >= ok + 3
    assert sample(found, "counts_markers_created_total") == 1
    assert sample(found, "counts_bumps_total") >= 4  # the conversation and three messages
    assert sample(found, "counts_bump_fanout_users_sum") >= 5
    assert sample(found, "counts_redis_errors_total", operation="read_marker") == 0
    assert sample(found, "counts_dependency_unavailable", dependency="redis") == 0


def test_every_log_line_is_json_with_request_fields_and_no_token(observed_server, tokens):
    server, log_path = observed_server
    user = new_user()
    token = tokens.user(user)["Authorization"].split()[1]
    response = requests.get(f"{server.url}/v1/users/{user}/unread-counts", timeout=10,
                            headers={"Authorization": f"Bearer {token}", "X-Request-ID": "req-42"})
    assert response.headers["X-Request-ID"] == "req-42"
    bad = requests.get(f"{server.url}/v1/users/{user}/unread-counts", timeout=10,
                       headers={"Authorization": f"Bearer {token}x", "X-Request-ID": "<script>"})
    assert bad.status_code == 401
    assert re.fullmatch(r"[0-9a-f]+-[0-9a-f]{8}-[0-9a-f]+", bad.headers["X-Request-ID"])  # ours
    server.stop()  # flushes and closes the log

    lines = log_path.read_text().splitlines()
    entries = [json.loads(line) for line in lines]  # every line parses
    assert all({"ts", "level", "logger", "msg", "pid"} <= set(e) for e in entries)
    assert any(e["logger"] == "gunicorn.error" for e in entries)  # gunicorn's own, same shape
    requests_logged = [e for e in entries if e["logger"] == "counts.access"]
    assert {"method", "route", "status", "duration_ms", "request_id"} <= set(requests_logged[0])
    ours = next(e for e in requests_logged if e["request_id"] == "req-42")
    assert ours["route"] == COUNTS_ROUTE and ours["status"] == 200
    text = log_path.read_text()
    assert token not in text and token.split(".")[2] not in text


def test_formatter_keeps_extras_and_exceptions():
    import logging

    record = logging.makeLogRecord({"msg": "x %s", "args": ("y",), "levelname": "WARNING",
                                    "name": "t", "route": "/r"})
    entry = json.loads(JsonFormatter().format(record))
    assert entry["msg"] == "x y" and entry["route"] == "/r" and entry["level"] == "warning"


# --- the operators' address (COUNTS_ADMIN_BIND) ------------------------------------------------

def test_metrics_and_the_detailed_readiness_are_on_the_admin_address_only(observed_server):
    server, _ = observed_server
    public_metrics = requests.get(f"{server.url}/metrics", timeout=10)
    assert public_metrics.status_code == 404
    assert public_metrics.headers["Content-Type"] == "application/problem+json"
    public_ready = requests.get(f"{server.url}/readyz", timeout=10)
    assert (public_ready.status_code, public_ready.json()) == (200, {"status": "ok"})
    admin_metrics = requests.get(f"{server.admin_url}/metrics", timeout=10)
    assert admin_metrics.status_code == 200
    assert "counts_push_queue_depth" in admin_metrics.text
    admin_ready = requests.get(f"{server.admin_url}/readyz", timeout=10).json()
    assert {"status", "postgres", "redis", "push"} <= set(admin_ready)
    assert requests.get(f"{server.admin_url}/healthz", timeout=10).status_code == 200


def test_the_public_readiness_costs_no_query_after_a_request_proved_postgres(app, api, resources):
    from counts.postgres.pool import stats

    client = app.test_client()
    before = stats.queries
    assert client.get("/readyz").get_json() == {"status": "ok"}  # nothing proved it yet: a ping
    assert stats.queries == before + 1
    api.counts(new_user())  # a 200: Postgres answered
    before = stats.queries
    for _ in range(5):
        assert client.get("/readyz").status_code == 200
    assert stats.queries == before


def test_the_public_readiness_is_503_while_postgres_is_down(app_factory, pg_proxy, database_url):
    from tests.support.postgres import proxied_url

    app = app_factory(DATABASE_URL=proxied_url(database_url, pg_proxy), COUNTS_PG_TIMEOUT=1.0)
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    pg_proxy.set_mode("cut")
    # What answered within the last second still counts: the probe notices within one more.
    wait_until(lambda: client.get("/readyz").status_code == 503, timeout=5, what="unready")
    response = client.get("/readyz")
    assert (response.status_code, response.get_json()) == (503, {"status": "unavailable"})
    assert response.headers["Retry-After"]


JWKS_WORKER = """
import sys
from counts.observability import metrics
metrics.jwks_fetched(sys.argv[1] == "ok", int(sys.argv[2]))
"""


def test_the_jwks_state_across_workers_is_the_worst_any_reports(tmp_path):
    """Two worker processes, one holding keys and one that never fetched any: whichever answers
    the probe reads the same state, the worse."""
    import subprocess
    import sys

    from counts.http import admin

    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for args in (("ok", "2"), ("error", "0")):
        subprocess.run([sys.executable, "-c", JWKS_WORKER, *args], env=env, check=True, cwd=ROOT)

    class Keys:  # this worker's own state, as KeySet.status() reports it
        def __init__(self, state):
            self.state = state

        def status(self):
            return self.state

    assert admin.jwks_state(Keys("ok"), str(tmp_path)) == "unavailable"
    for name in tmp_path.iterdir():
        name.unlink()
    subprocess.run([sys.executable, "-c", JWKS_WORKER, "error", "3"], env=env, check=True, cwd=ROOT)
    subprocess.run([sys.executable, "-c", "import counts.observability.metrics"], env=env,
                   check=True, cwd=ROOT)
    assert admin.jwks_state(Keys("ok"), str(tmp_path)) == "stale"  # a worker never fetching: ok
