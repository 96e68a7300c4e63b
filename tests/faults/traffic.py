"""Traffic for the fault tests: pollers and writers against the live service, judged by Postgres.

Each user has an active device (a poller thread that keeps its own ETag and last counts, as a
mobile app does) and an idle one (it polls when told to, e.g. right before a fault, and then only
at the end: the device in a pocket that a stale 304 would strand). Writers send messages and mark
conversations read through the API with a service token, and remember every acknowledged write.

`finish` stops the traffic, waits for the outbox to drain, lets every device poll once more with
the ETag it holds, and compares what each device ends up showing with Postgres' truth.
"""

import collections
import itertools
import random
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

import requests

from counts.identity import mint_token
from tests.faults.threads import BackgroundThreads
from tests.faults.verdict import (
    Figures,
    Outcome,
    inconsistent_conversations,
    lost_writes,
    markers_gone_back,
    pending_bumps,
)
from tests.faults.world import World
from tests.support.environment import SECRET
from tests.support.figures import FIGURES
from tests.support.postgres import true_counts
from tests.support.services import wait_until

REQUEST_TIMEOUT = 10.0  # seconds; far above any timeout the service is configured with
MAX_REQUESTS = 40_000  # per Traffic: the traffic is bounded however a test goes
POLL_PACE = 0.02  # seconds between one device's polls
WRITE_PACE = 0.01  # seconds between one writer's writes
BACKOFF = 0.1  # seconds a client waits after a request got no answer

class Client:
    """One device of one user: its own HTTP session, the ETag it holds and the counts it shows."""

    def __init__(self, name: str, user: str):
        self.name, self.user = name, user
        self.auth = {"Authorization": f"Bearer {mint_token(SECRET, user)}"}
        self.session = requests.Session()
        self.etag: str | None = None
        self.counts: dict | None = None


@dataclass
class Fault:
    """A fault injected during the traffic, and when."""

    name: str
    started: float
    healed: float = float("inf")


class Traffic(BackgroundThreads):
    """Pollers and writers running against the service at `url` (or several instances of it,
    taking turns request by request) until `finish`."""

    # Busy conversations also get mentions, notify levels and marks as unread (issue 19): the
    # writes whose lost bump shows only in the totals the levels make, never in the plain one.
    model_writes = True

    def __init__(self, url: str | list[str], world: World, *, pollers: int | None = None,
                 writers: int = 3, retry_dropped: bool = False, unavailable_ok: bool = True,
                 probe_health: bool = False):
        super().__init__(join_timeout=REQUEST_TIMEOUT + 5)
        # Several URLs: instances of the service behind one client set; requests take turns.
        self.urls, self.world = [url] if isinstance(url, str) else list(url), world
        self.turns = itertools.count()
        # Clients send a request once more when its connection broke: no answer, or one cut
        # short (a worker killed between the headers and the body).
        self.retry_dropped = retry_dropped
        self.unavailable_ok = unavailable_ok  # 503 + Retry-After is acceptable in this test
        self.lock = threading.Lock()
        self.outcomes: list[Outcome] = []
        self.tally: collections.Counter = collections.Counter()
        self.acked_messages: dict[str, str] = {}  # message id -> conversation
        self.acked_reads: list[tuple[str, str, int]] = []  # conversation, user, last_read_seq
        self.faults: list[Fault] = []
        self.phase = "before"
        self.targets = world.conversations  # what writers write to; () pauses them
        self.dropped_ok = False
        self.writes_in_flight = 0
        self.service_auth = {"Authorization": f"Bearer {mint_token(SECRET, 'fault-writer', service=True)}"}
        self.active = [Client(f"{user[:8]}/phone", user) for user in world.users]
        self.idle = [Client(f"{user[:8]}/tablet", user) for user in world.users]
        for client in self.active[:pollers]:  # the others poll only at the end
            self.spawn(self._poll_loop, client)
        for n in range(writers):
            self.spawn(self._write_loop, n)
        if probe_health:
            self.spawn(self._health_loop)

    # --- running (started on entering, stopped on leaving: BackgroundThreads) -------------------

    def _running(self) -> bool:
        """Whether traffic threads should go on: not stopped, request budget left."""
        return not self.stopping.is_set() and len(self.outcomes) < MAX_REQUESTS

    def _poll_loop(self, client: Client) -> None:
        """An active device: poll, wait a little (longer after a failure), repeat."""
        while self._running():
            outcome = self.poll(client)
            self.stopping.wait(POLL_PACE if outcome.error is None else BACKOFF)

    def _health_loop(self) -> None:
        """Probe /healthz, which needs no dependency, to see whether the workers answer."""
        with requests.Session() as http:
            while self._running():
                self._send(http, "prober", None, "health", "GET", "/healthz")
                self.stopping.wait(POLL_PACE)

    def _write_loop(self, number: int) -> None:
        """A writer: send a message or mark read in a target conversation, repeat."""
        rng = random.Random(number)
        with requests.Session() as http:
            while self._running():
                with self.lock:  # quiesce() must see every write that saw targets
                    targets = self.targets
                    if targets:
                        self.writes_in_flight += 1
                if not targets:
                    self.stopping.wait(POLL_PACE)
                    continue
                try:
                    conversation = rng.choice(targets)
                    members = self.world.members[conversation]
                    if conversation in self.world.quiet:
                        write, user = self.send, members[0]
                    else:
                        roll = rng.random()
                        write = self.send if roll < 0.55 else self.mark_read if roll < 0.75 \
                            or not self.model_writes else self.settle
                        user = rng.choice(members)
                    outcome = write(http, f"writer-{number}", conversation, user)
                finally:
                    with self.lock:
                        self.writes_in_flight -= 1
                self.stopping.wait(WRITE_PACE if outcome.error is None else BACKOFF)

    # --- requests -------------------------------------------------------------------------------

    def _send(self, http: requests.Session, client: str, user: str | None, kind: str,
              method: str, path: str, **kwargs) -> tuple[Outcome, requests.Response | None, dict | None]:
        """Send one request (once more if dropped and the test allows retries); record it."""
        attempt = (http, client, user, kind, method, path)
        outcome, response, body = self._attempt(*attempt, **kwargs)
        if outcome.error in ("dropped", "truncated") and self.retry_dropped:
            outcome.retried = True
            outcome, response, body = self._attempt(*attempt, **kwargs)
        return outcome, response, body

    def _attempt(self, http, client, user, kind, method, path, **kwargs):
        """Send one request once and record its outcome."""
        outcome = Outcome(client, user, kind, self.phase, time.monotonic(),
                          dropped_ok=self.dropped_ok, unavailable_ok=self.unavailable_ok)
        response = body = None
        try:
            url = self.urls[next(self.turns) % len(self.urls)]
            response = http.request(method, url + path, timeout=REQUEST_TIMEOUT, **kwargs)
            outcome.status = response.status_code
            body = self._check_response(outcome, response)
        except requests.Timeout as error:
            outcome.error, outcome.detail = "timeout", repr(error)[:200]
        except requests.ConnectionError as error:
            outcome.error, outcome.detail = "dropped", repr(error)[:200]
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError,
                requests.exceptions.JSONDecodeError) as error:
            outcome.error, outcome.detail = "truncated", repr(error)[:200]
        outcome.ended = time.monotonic()
        # In flight when the service began stopping: a keep-alive connection the stopping worker
        # closed under it is as fine to lose as one refused (and it happens, under load).
        outcome.dropped_ok = outcome.dropped_ok or self.dropped_ok
        with self.lock:
            self.outcomes.append(outcome)
            if outcome.status is not None:  # answered (judged later), so the traffic moved on
                self.tally[kind] += 1
        return outcome, (response if outcome.error is None else None), body

    @staticmethod
    def _check_response(outcome: Outcome, response: requests.Response) -> dict | None:
        """The JSON body of a 200/201 (read completely); flags answers that break the HTTP rules."""
        outcome.etag = response.headers.get("ETag")
        body = response.json() if response.status_code in (200, 201) else None
        if response.status_code == 503:
            retry_after = response.headers.get("Retry-After", "")
            if not retry_after.isdigit() or int(retry_after) <= 0 or \
                    response.headers.get("Content-Type") != "application/problem+json":
                outcome.error = "malformed"
                outcome.detail = f"503 without Retry-After or problem+json: {response.headers}"
        elif response.status_code >= 400:
            outcome.detail = response.text
        if outcome.kind in ("poll", "final") and response.status_code in (200, 304) \
                and not (outcome.etag or "").startswith('"'):
            outcome.error, outcome.detail = "malformed", f"{response.status_code} without an ETag"
        return body

    def poll(self, client: Client, kind: str = "poll") -> Outcome:
        """One conditional poll by `client`, updating the ETag and counts it holds on a 200."""
        headers = dict(client.auth)
        if client.etag is not None:
            headers["If-None-Match"] = client.etag
        outcome, response, body = self._send(client.session, client.name, client.user, kind, "GET",
                                              f"/v1/users/{client.user}/unread-counts",
                                              headers=headers)
        if response is not None and response.status_code == 200 and outcome.error is None:
            client.etag, client.counts = outcome.etag, body
        return outcome

    def send(self, http, writer: str, conversation: str, sender: str) -> Outcome:
        """Send a message as `sender`; remember it if acknowledged."""
        outcome, response, body = self._send(
            http, writer, None, "send", "POST", f"/v1/conversations/{conversation}/messages",
            json={"sender_id": sender, "body": "fault traffic"}, headers=self.service_auth)
        if response is not None and response.status_code == 201:
            with self.lock:
                self.acked_messages[body["message_id"]] = conversation
                self.tally["acked"] += 1
                self.tally["acked", conversation] += 1
        return outcome

    def acknowledged(self, message_id: str, conversation: str) -> None:
        """Count a message acknowledged outside the traffic (a test's own request) as a write."""
        with self.lock:
            self.acked_messages[message_id] = conversation

    def mark_read(self, http, writer: str, conversation: str, user: str) -> Outcome:
        """Mark a conversation read for `user`; remember the read state if acknowledged."""
        outcome, response, body = self._send(
            http, writer, None, "read", "POST", f"/v1/conversations/{conversation}/read",
            json={"user_id": user}, headers=self.service_auth)
        if response is not None and response.status_code == 200:
            with self.lock:
                self.acked_reads.append((conversation, user, body["last_read_seq"]))
                self.tally["acked"] += 1
        return outcome

    def settle(self, http, writer: str, conversation: str, user: str) -> Outcome:
        """One of issue 19's writes by (or for) `user`: a message mentioning another member, a new
        notify level, or a mark as unread (the flag: read positions never go back here, so a
        read acknowledged stays a read Postgres must hold)."""
        rng = random.Random(f"{writer}/{len(self.outcomes)}")
        kind = rng.choice(("mention", "notify", "unread"))
        if kind == "mention":
            others = [m for m in self.world.members[conversation] if m != user] or [user]
            outcome, response, body = self._send(
                http, writer, None, "send", "POST", f"/v1/conversations/{conversation}/messages",
                json={"sender_id": user, "body": "fault traffic",
                      "mentions": {"user_ids": [rng.choice(others)], "all": rng.random() < 0.2}},
                headers=self.service_auth)
            if response is not None and response.status_code == 201:
                with self.lock:
                    self.acked_messages[body["message_id"]] = conversation
                    self.tally["acked"] += 1
                    self.tally["acked", conversation] += 1
            return outcome
        if kind == "notify":
            outcome, _, _ = self._send(
                http, writer, None, "notify", "PATCH", f"/v1/conversations/{conversation}/members/{user}",
                json={"notify": rng.choice(("all", "mentions", "none"))}, headers=self.service_auth)
            return outcome
        outcome, _, _ = self._send(
            http, writer, None, "unread", "POST", f"/v1/conversations/{conversation}/unread",
            json={"user_id": user}, headers=self.service_auth)
        return outcome

    def bump(self, users: list[str]) -> Outcome:
        """Bump users' markers through the bump API, as a backend service that wrote elsewhere."""
        with requests.Session() as http:
            return self._send(http, "bumper", None, "bump", "POST", "/v1/markers/bump",
                              json={"user_ids": users}, headers=self.service_auth)[0]

    # --- phases ---------------------------------------------------------------------------------

    @contextmanager
    def fault(self, name: str):
        """The traffic runs in phase 'during' inside the block, 'after' once the block healed it."""
        fault = Fault(name, time.monotonic())
        self.faults.append(fault)
        self.phase = "during"
        yield fault
        fault.healed = time.monotonic()
        self.phase = "after"

    def write_to(self, conversations: tuple[str, ...]) -> None:
        """From now on writers write only to these conversations (none: they pause)."""
        with self.lock:
            self.targets = tuple(conversations)

    def quiesce(self) -> None:
        """Pause the writers and wait until no write is in flight."""
        self.write_to(())
        wait_until(lambda: self.writes_in_flight == 0, timeout=REQUEST_TIMEOUT + 5,
                   what="writes in flight to finish")

    def allow_dropped(self, allowed: bool = True) -> None:
        """Requests sent from now on may be refused without an answer (the service is stopping)."""
        self.dropped_ok = allowed

    def retarget(self, url: str) -> None:
        """Send the traffic to another service address (a restarted service)."""
        self.urls = [url]

    def advance(self, polls: int = 0, writes: int = 0, acked: int = 0,
                every_conversation: bool = False, timeout: float = 20.0) -> None:
        """Wait until this many more polls, writes and acknowledged writes have completed.

        `every_conversation`: also until each conversation writers target got one more
        acknowledged message, so every user's counts changed meanwhile.
        """
        with self.lock:
            start, targets = self.tally.copy(), self.targets

        def more(key) -> int:
            """How much `key` grew since advance() was called."""
            return self.tally[key] - start[key]

        def done() -> bool:
            """Whether every requested amount was reached."""
            return (more("poll") >= polls and more("acked") >= acked
                    and more("send") + more("read") >= writes
                    and (not every_conversation or all(more(("acked", c)) for c in targets)))

        wait_until(done, timeout=timeout, interval=0.01,
                   what=f"{polls} polls, {writes} writes, {acked} acked writes in {self.phase}")

    def snapshot_idle(self) -> dict[str, int]:
        """Every idle device polls now, and then not again until the end; the totals they show."""
        for client in self.idle:
            self.poll(client)
        return {client.name: client.counts["total"] for client in self.idle}

    def probe_idle(self) -> list[Outcome]:
        """Every idle device polls once now (e.g. during a fault); the outcomes."""
        return [self.poll(client) for client in self.idle]

    def slowest(self, phase: str) -> dict[str, float]:
        """The longest a request of each kind, sent in `phase`, took (seconds)."""
        longest: dict[str, float] = {}
        for o in self.outcomes:
            if o.phase == phase:
                longest[o.kind] = round(max(longest.get(o.kind, 0.0), o.seconds), 2)
        return longest

    # --- the verdict ----------------------------------------------------------------------------

    def truth(self, pg, user: str) -> object:
        """What the user's counts must show, recounted from the tables (tests.support.postgres.
        true_counts): the totals the levels, marks and mentions make."""
        return self.summary(true_counts(pg, user))

    @staticmethod
    def summary(counts: dict) -> object:
        """The numbers of a body the verdict compares."""
        return tuple(counts[key] for key in ("total", "unread_conversations", "mentions", "badge"))

    def lost_writes(self, pg) -> list[str]:
        """Acknowledged writes Postgres does not hold."""
        return lost_writes(pg, self.acked_messages, self.acked_reads)

    def inconsistencies(self, pg) -> list[str]:
        """Conversations Postgres holds in a state no write sequence could leave."""
        return inconsistent_conversations(pg, list(self.world.members))

    def finish(self, pg, name: str) -> Figures:
        """Stop, let the outbox drain, poll once more from every device, and judge it all."""
        self.stop()
        self.phase, self.dropped_ok, self.retry_dropped = "final", False, False
        problems = []
        try:
            wait_until(lambda: pending_bumps(pg) == 0, timeout=15, what="the outbox to drain")
        except AssertionError:
            problems.append(f"outbox not drained: {pending_bumps(pg)} rows wait for Redis")
        clients = self.active + self.idle
        stale = []
        for client in clients:
            client.session.close()
            client.session = requests.Session()  # the final check, not the traffic's connections
            outcome = self.poll(client, kind="final")
            truth = self.truth(pg, client.user)
            shown = None if client.counts is None else self.summary(client.counts)
            if shown != truth:
                stale.append(f"{client.name} shows {shown} after a {outcome.status or outcome.error}"
                             f" with {client.etag}; Postgres says {truth}")
            client.session.close()
        problems += [p for p in (o.problem() for o in self.outcomes) if p]
        problems += self.inconsistencies(pg)
        problems += markers_gone_back(self.outcomes)
        figures = Figures(
            name=name, faults=len(self.faults), requests=len(self.outcomes),
            statuses=collections.Counter(o.status or o.error for o in self.outcomes),
            acked_writes=len(self.acked_messages) + len(self.acked_reads), clients=len(clients),
            retried=sum(o.retried for o in self.outcomes), stale=stale,
            lost=self.lost_writes(pg), problems=problems)
        FIGURES.append(figures)
        print(figures.line())
        return figures
