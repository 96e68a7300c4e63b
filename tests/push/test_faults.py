"""The dispatcher as a real process under faults: stopped and killed mid-round, Postgres cut, a
push service down for a while, and under gevent. Nothing is lost; duplicates stay bounded."""

import signal

from tests.support.api import new_user
from tests.support.postgres import proxied_url, true_total
from tests.support.push import queue_empty, subscribe, worker_env
from tests.support.services import wait_until


def test_sigterm_finishes_the_round_in_flight(push_api, push_service, push_config, workers, pg):
    alice, bob = new_user(), new_user()
    conversation = push_api.conversation(alice, bob)
    browser = subscribe(push_api, push_service, bob)
    worker = workers(worker_env(push_config))
    release = push_service.trouble.hold()
    push_api.send(conversation, alice)
    wait_until(browser.received, what="the push to be in flight")
    worker.signal(signal.SIGTERM)
    release.set()  # the push service answers; the round must commit before the process exits
    assert worker.wait() == 0
    assert queue_empty(pg)
    assert len(browser.received()) == 1
    assert "push dispatcher stopped" in worker.log()


def test_killed_mid_round_loses_nothing_and_repeats_at_most_that_round(
        push_api, push_service, push_config, workers, pg):
    alice = new_user()
    users = [new_user() for _ in range(3)]
    conversations = [push_api.conversation(alice, user) for user in users]
    browsers = [subscribe(push_api, push_service, user) for user in users]
    for conversation in conversations:
        push_api.send(conversation, alice)
    push_service.trouble.hold()  # pushes arrive, their answers never do
    # One round takes all three, killed before its provider timeout (PUSH_TIMEOUT: a timeout
    # would end the round, and its retry add a push).
    first = workers(worker_env(push_config))
    wait_until(lambda: all(browser.received() for browser in browsers), what="the round in flight")
    first.signal(signal.SIGKILL)
    first.wait()
    assert not queue_empty(pg)  # the round never recorded: its jobs are still there
    push_service.trouble.heal()
    workers(worker_env(push_config))
    wait_until(lambda: queue_empty(pg), timeout=40,  # once the lease ends: 4 push timeouts (8 s)
               what="the second worker to push again")
    for user, browser in zip(users, browsers, strict=True):
        assert browser.messages()[-1]["total"] == true_total(pg, user) == 1
        assert len(browser.received()) == 2  # the killed round's push, and its repetition


def test_postgres_cut_delays_pushes_and_loses_none(push_api, push_service, push_config, workers,
                                                    pg, pg_proxy, database_url):
    alice, bob = new_user(), new_user()
    conversation = push_api.conversation(alice, bob)
    browser = subscribe(push_api, push_service, bob)
    worker = workers({**worker_env(push_config), "DATABASE_URL": proxied_url(database_url, pg_proxy)})
    push_api.send(conversation, alice)
    wait_until(browser.messages, what="the first push")
    pg_proxy.set_mode("cut")
    push_api.send(conversation, alice)  # the writer reaches Postgres; the dispatcher cannot
    push_api.send(conversation, alice)
    wait_until(lambda: "lost Postgres, reconnecting" in worker.log(),
               what="the worker to notice")
    pg_proxy.set_mode("forward")
    wait_until(lambda: browser.messages()[-1]["total"] == 3 and queue_empty(pg), timeout=40,
               what="the pushes written during the cut")


def test_a_push_service_down_for_a_while_gets_every_push_with_bounded_retries(
        push_api, push_service, push_config, workers, pg):
    alice = new_user()
    users = [new_user() for _ in range(5)]
    conversations = [push_api.conversation(alice, user) for user in users]
    browsers = [subscribe(push_api, push_service, user) for user in users]
    push_service.trouble.fail(503, seconds=4)  # no Retry-After: our backoff (base 0.2 s)
    workers(worker_env(push_config))
    for conversation in conversations:
        push_api.send(conversation, alice)
    wait_until(lambda: all(browser.messages() for browser in browsers) and queue_empty(pg),
               timeout=40, what="every push after the outage")
    assert all(browser.messages()[-1]["total"] == 1 for browser in browsers)
    # Per device: attempts at ~0.1-0.2, 0.2-0.4, 0.4-0.8, 0.8-1.6, 1.6-3.2 s... before 4 s.
    assert push_service.trouble.requests_refused <= 5 * 7


def test_the_worker_runs_under_gevent(push_api, push_service, push_config, workers, pg):
    alice, bob = new_user(), new_user()
    conversation = push_api.conversation(alice, bob)
    browser = subscribe(push_api, push_service, bob)
    worker = workers(worker_env(push_config), use_gevent=True)
    push_api.send(conversation, alice)
    wait_until(browser.messages, what="the push from the gevent worker")
    push_api.read(conversation, bob)
    wait_until(lambda: browser.messages()[-1]["total"] == 0, what="the badge push")
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0
