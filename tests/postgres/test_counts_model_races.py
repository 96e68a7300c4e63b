"""Races of issue 19's writes on real Postgres, in own mode: concurrent mark-unread and read, a
mute during a burst, deletes of mentioned messages while the reader reads. Each ends on the
recount from the tables (tests.support.postgres.true_counts), and a client that kept polling
with its ETag throughout holds that same body: no write left it on a stale 304."""

import random
import threading

from tests.support.api import Api, new_user
from tests.support.postgres import true_counts

ROUNDS = 25


class Poller:
    """A client polling one user conditionally, keeping the last body it was given."""

    def __init__(self, app, tokens, user):
        self.api = Api(app.test_client(), tokens)
        self.user, self.etag, self.body = user, None, None

    def poll(self) -> None:
        response = self.api.counts(self.user, etag=self.etag)
        assert response.status_code in (200, 304)
        if response.status_code == 200:
            self.etag, self.body = response.headers["ETag"], response.get_json()

    def held(self) -> dict:
        """What the client shows after one more conditional poll, without its user_id."""
        self.poll()
        return {key: value for key, value in self.body.items() if key != "user_id"}


def run_together(*workers) -> None:
    """Run the workers in threads, started together; re-raise the first failure."""
    failures: list[BaseException] = []
    start = threading.Barrier(len(workers))

    def run(work):
        try:
            start.wait(timeout=10)
            work()
        except BaseException as error:  # reported below, in the test's thread
            failures.append(error)

    threads = [threading.Thread(target=run, args=(work,)) for work in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive(), "a worker hung"
    if failures:
        raise failures[0]


def polling(poller, rounds=ROUNDS):
    def work():
        for _ in range(rounds):
            poller.poll()
    return work


def test_concurrent_mark_unread_and_reads_end_on_the_recount(app, tokens, pg):
    alice, bob = new_user(), new_user()
    api = Api(app.test_client(), tokens)
    room = api.conversation(alice, bob)
    for n in range(12):
        response = api.mention(room, alice, [bob]) if n % 3 == 0 else api.send(room, alice)
        assert response.status_code == 201
    poller = Poller(app, tokens, bob)
    marker, reader = Api(app.test_client(), tokens), Api(app.test_client(), tokens)
    rng = random.Random(19)
    marks = [rng.choice([None, *range(1, 13)]) for _ in range(ROUNDS)]
    reads = [rng.choice([None, *range(0, 13)]) for _ in range(ROUNDS)]

    def mark():
        for from_seq in marks:
            assert marker.unread(room, bob, from_seq).status_code == 200

    def read():
        for up_to in reads:
            assert reader.read(room, bob, up_to).status_code == 200

    run_together(mark, read, polling(poller))
    assert poller.held() == true_counts(pg, bob)


def test_a_mute_during_a_burst_ends_on_the_recount_and_bumps_the_muter(app, tokens, pg):
    alice, carol, bob = new_user(), new_user(), new_user()
    api = Api(app.test_client(), tokens)
    room = api.conversation(alice, carol, bob)
    poller = Poller(app, tokens, bob)
    levels = ["none", "mentions", "all", "mentions", "none"] * 5

    def burst(sender):
        sending = Api(app.test_client(), tokens)

        def work():
            for n in range(ROUNDS // 2):
                response = sending.mention(room, sender, [bob]) if n % 4 == 0 else \
                    sending.send(room, sender)
                assert response.status_code == 201
        return work

    def mute():
        muting = Api(app.test_client(), tokens)
        for level in levels:
            assert muting.notify(room, bob, level).status_code == 200

    run_together(burst(alice), burst(carol), mute, polling(poller))
    truth = true_counts(pg, bob)
    assert truth["conversations"][0]["notify"] == "none"
    assert (truth["total"], truth["badge"]) == (0, 0)
    assert poller.held() == truth


def test_deletes_of_mentioned_messages_during_reads_end_on_the_recount(app, tokens, pg):
    alice, bob = new_user(), new_user()
    api = Api(app.test_client(), tokens)
    room = api.conversation(alice, bob)
    everyone = api.mention(room, alice, everyone=True, as_service=True).get_json()["message_id"]
    named = [api.mention(room, alice, [bob]).get_json()["message_id"] for _ in range(10)]
    poller = Poller(app, tokens, bob)
    doomed = [everyone, *named[::2]]

    def delete():
        deleting = Api(app.test_client(), tokens)
        for message in doomed:
            response = deleting.client.delete(f"/v1/conversations/{room}/messages/{message}",
                                              headers=tokens.service())
            assert response.status_code == 204

    def read_and_unread():
        reading = Api(app.test_client(), tokens)
        for seq in range(1, 12):
            assert reading.read(room, bob, seq).status_code == 200
            assert reading.unread(room, bob, from_seq=max(1, seq - 3)).status_code == 200

    run_together(delete, read_and_unread, polling(poller))
    truth = true_counts(pg, bob)
    assert truth["mentions"] == truth["total"] > 0  # every message left mentions bob
    assert poller.held() == truth
