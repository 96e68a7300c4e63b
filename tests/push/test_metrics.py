"""Push metrics: the queue on the service's /metrics and /readyz, the dispatcher's counters and
latency on its own /metrics (COUNTS_PUSH_METRICS_PORT)."""

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.api import admin_client, new_user
from tests.support.push import queue_empty, subscribe, worker_env
from tests.support.services import free_port, wait_until


def samples(text: str) -> dict[tuple, float]:
    """{(name, sorted labels): value} of a Prometheus exposition."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_the_queue_shows_on_the_services_metrics_and_readyz(push_api, push_service):
    alice, bob = new_user(), new_user()
    conversation = push_api.conversation(alice, bob)
    subscribe(push_api, push_service, bob)
    push_api.send(conversation, alice)  # no dispatcher runs: the job waits
    admin = admin_client(push_api.client.application)
    metrics = samples(admin.get("/metrics").get_data(as_text=True))
    assert metrics[("counts_push_queue_depth", ())] == 1
    assert metrics[("counts_push_oldest_job_age_seconds", ())] >= 0
    assert metrics[("counts_push_devices", (("platform", "webpush"),))] == 1
    ready = admin.get("/readyz").get_json()
    assert ready["push"]["queued"] == 1 and ready["push"]["oldest_seconds"] >= 0


def test_the_dispatcher_counts_outcomes_and_latency_on_its_own_port(push_api, push_service,
                                                                     push_config, workers, pg):
    alice, bob = new_user(), new_user()
    conversation = push_api.conversation(alice, bob)
    browser = subscribe(push_api, push_service, bob)
    port = free_port()
    workers({**worker_env(push_config), "COUNTS_PUSH_METRICS_PORT": str(port)})
    push_api.send(conversation, alice)
    wait_until(lambda: browser.messages() and queue_empty(pg), what="the push")
    metrics = samples(requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)
    assert metrics[("counts_push_sent_total", (("outcome", "accepted"), ("provider", "webpush")))] == 1
    assert metrics[("counts_push_latency_seconds_count", ())] == 1
    assert 0 < metrics[("counts_push_latency_seconds_sum", ())] < 10
    assert metrics[("counts_push_queue_depth", ())] == 0
