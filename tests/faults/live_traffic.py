"""Live devices under faults: every user holds an SSE stream, a WebSocket and a long-poll, while
writers write; the devices reconnect with their ETag when cut, as real apps do.

The verdict: once the writes stop (and the outbox drained), every device must come to show
Postgres' truth *by itself*, through its live connection, within CONVERGE seconds. The service
runs with heartbeats far longer than that, so only the feed (publish, re-check on subscription
and on reconnect) and the resume by ETag can deliver it: a wake-up lost for good shows as a
stale device. And no connection may send the same ETag twice in a row.
"""

import contextlib
import http.client
import json
import random
import socket
import threading
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

import requests
import websocket

from counts.identity import mint_token
from counts.markers import keys
from tests.faults.threads import BackgroundThreads
from tests.faults.verdict import pending_bumps
from tests.faults.world import World
from tests.support.environment import SECRET
from tests.support.figures import FIGURES
from tests.support.postgres import true_total
from tests.support.services import wait_until
from tests.support.sse import SseParser

HEARTBEAT = 60  # seconds: longer than any wait below, so a heartbeat never hides a lost wake-up
CONVERGE = 8.0  # seconds the devices get to show the final truth once the writes stopped
LONG_POLL = 20  # seconds a long-poll asks to wait
CONNECT_TIMEOUT = 5.0
MAX_WRITES = 20_000  # per run: bounded whatever a test does
WRITE_PACE = 0.005
RECONNECT_AFTER = (0.3, 0.6)  # seconds a device waits before reconnecting (writes go on meanwhile)


@dataclass
class Device:
    """One live connection of one user (reconnected when cut), and everything it received."""

    kind: str  # sse, ws, long-poll
    user: str
    etag: str | None = None
    total: int | None = None
    events: int = 0
    connections: int = 0
    repeats: list[str] = field(default_factory=list)  # an ETag sent twice in a row
    errors: list[str] = field(default_factory=list)
    sock: object = None  # what stop() shuts down to end a blocking read

    def receive(self, etag: str, counts: dict, last: list) -> None:
        """Counts arrived on the current connection (whose ETags so far are in `last`)."""
        if last and last[-1] == etag:
            self.repeats.append(f"{self.kind} of {self.user[:8]} sent {etag} twice in a row")
        last.append(etag)
        self.etag, self.total = etag, counts["total"]
        self.events += 1


class LiveTraffic(BackgroundThreads):
    """Devices and writers against the service at `url` until stopped."""

    def __init__(self, url: str, world: World, writers: int = 3):
        super().__init__(join_timeout=10)
        self.url, self.world = url, world
        self.writing = threading.Event()
        self.writing.set()
        self.lock = threading.Lock()
        self.acked = 0
        self.in_flight = 0  # writes sent and not yet answered
        self.faults = 0
        self.service = {"Authorization": f"Bearer {mint_token(SECRET, 'live-writer', service=True)}"}
        self.tokens = {user: mint_token(SECRET, user, ttl=3600) for user in world.users}
        self.devices = [Device(kind, user) for user in world.users
                        for kind in ("sse", "ws", "long-poll")]
        for device in self.devices:
            self.spawn(self._device_loop, device)
        for n in range(writers):
            self.spawn(self._write_loop, n)

    def __enter__(self) -> "LiveTraffic":
        """Start every device and writer; return once every device has its first counts."""
        super().__enter__()
        wait_until(lambda: all(d.total is not None for d in self.devices), timeout=20,
                   what="every device's first counts")
        return self

    def stop(self) -> None:
        """End every device and writer: cut the devices' connections, whose reads block."""
        self.stopping.set()
        self.writing.clear()
        for device in self.devices:
            self._cut(device)
        super().stop()

    # --- devices --------------------------------------------------------------------------------

    def _device_loop(self, device: Device) -> None:
        """Connect, receive until cut, reconnect with the ETag held (after a short backoff)."""
        connect = {"sse": self._sse, "ws": self._ws, "long-poll": self._long_poll}[device.kind]
        while not self.stopping.is_set():
            try:
                connect(device)
            except (OSError, http.client.HTTPException, websocket.WebSocketException,
                    ValueError) as error:
                if not self.stopping.is_set():
                    device.errors.append(f"{type(error).__name__}")
            self.stopping.wait(random.uniform(*RECONNECT_AFTER))

    def _connection(self, device: Device) -> http.client.HTTPConnection:
        parts = urlsplit(self.url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=HEARTBEAT + 30)
        conn.connect()
        device.sock, device.connections = conn.sock, device.connections + 1
        return conn

    def _headers(self, device: Device) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[device.user]}"}

    def _sse(self, device: Device) -> None:
        """One SSE connection, resumed with Last-Event-ID."""
        conn = self._connection(device)
        headers = self._headers(device)
        if device.etag:
            headers["Last-Event-ID"] = device.etag
        try:
            conn.request("GET", f"/v1/users/{device.user}/unread-counts/stream", headers=headers)
            response = conn.getresponse()
            if response.status != 200:
                device.errors.append(f"sse {response.status}")
                return
            last: list[str] = []
            parser = SseParser()
            while line := response.readline():
                event = parser.feed(line.decode().rstrip("\r\n"))
                if event is not None and event.kind == "counts":
                    device.receive(event.etag, event.counts, last)
        finally:
            conn.close()

    def _ws(self, device: Device) -> None:
        """One WebSocket, resumed with ?etag=."""
        query = f"?etag={quote(device.etag)}" if device.etag else ""
        url = "ws" + self.url.removeprefix("http") + f"/v1/users/{device.user}/unread-counts/ws"
        ws = websocket.create_connection(url + query, timeout=HEARTBEAT + 30,
                                         header=[f"Authorization: Bearer {self.tokens[device.user]}"])
        device.sock, device.connections = ws, device.connections + 1
        last: list[str] = []
        try:
            while not self.stopping.is_set():
                message = json.loads(ws.recv())
                device.receive(message["etag"], message["counts"], last)
        finally:
            ws.shutdown()

    def _long_poll(self, device: Device) -> None:
        """Long-polls on one keep-alive connection, each with the ETag held."""
        conn = self._connection(device)
        try:
            while not self.stopping.is_set():
                headers = self._headers(device)
                if device.etag:
                    headers.update({"If-None-Match": device.etag, "Prefer": f"wait={LONG_POLL}"})
                conn.request("GET", f"/v1/users/{device.user}/unread-counts", headers=headers)
                response = conn.getresponse()
                body = response.read()
                if response.status == 200:
                    device.receive(response.headers["ETag"], json.loads(body), [device.etag])
                elif response.status != 304:
                    device.errors.append(f"long-poll {response.status}")
                    return
        finally:
            conn.close()

    def _cut(self, device: Device) -> None:
        """End a device's blocking read (stop). The raw socket is shut down, WebSocket included:
        closing it (websocket-client's shutdown()) does not wake a thread blocked reading it."""
        sock = device.sock
        if isinstance(sock, websocket.WebSocket):
            sock = sock.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    # --- writers --------------------------------------------------------------------------------

    def _write_loop(self, number: int) -> None:
        """Send messages and mark conversations read, through the API, while writing is on."""
        rng = random.Random(number)
        conversations = list(self.world.members)
        with requests.Session() as http_session:
            while not self.stopping.is_set() and self.acked < MAX_WRITES:
                with self.lock:  # finish() must see every write that saw writing on
                    writing = self.writing.is_set()
                    self.in_flight += writing
                if not writing:
                    self.stopping.wait(0.05)
                    continue
                conversation = rng.choice(conversations)
                member = rng.choice(self.world.members[conversation])
                if rng.random() < 0.7:
                    path, body = "messages", {"sender_id": member, "body": "live"}
                else:
                    path, body = "read", {"user_id": member}
                try:
                    answer = http_session.post(f"{self.url}/v1/conversations/{conversation}/{path}",
                                               json=body, headers=self.service, timeout=10)
                    acked = answer.status_code in (200, 201)
                except requests.RequestException:
                    acked = False
                with self.lock:
                    self.acked += acked
                    self.in_flight -= 1
                self.stopping.wait(WRITE_PACE)

    def advance(self, writes: int, timeout: float = 30.0) -> None:
        """Wait until this many more writes were acknowledged."""
        target = self.acked + writes
        wait_until(lambda: self.acked >= target, timeout=timeout, what=f"{writes} more writes")

    # --- the verdict ----------------------------------------------------------------------------

    def finish(self, pg, name: str, redis_client=None) -> "LiveFigures":
        """Stop writing, let the outbox drain, then every device must show the truth by itself."""
        with self.lock:
            self.writing.clear()
        wait_until(lambda: self.in_flight == 0, timeout=15, what="writes in flight to land")
        wait_until(lambda: pending_bumps(pg) == 0, timeout=15, what="the outbox to drain")
        truth = {user: true_total(pg, user) for user in self.world.users}
        with contextlib.suppress(AssertionError):  # the stale ones are listed below
            wait_until(lambda: all(d.total == truth[d.user] for d in self.devices),
                       timeout=CONVERGE, what="every device to show the truth")
        def marker(user: str) -> str:
            """The user's marker in Redis now, for the report."""
            if redis_client is None:
                return "?"
            return str(redis_client.get(keys.marker_key(user)))

        stale = [f"{d.kind} of {d.user[:8]} shows {d.total} ({d.etag}); Postgres says "
                 f"{truth[d.user]}, Redis holds {marker(d.user)}"
                 for d in self.devices if d.total != truth[d.user]]
        self.stop()
        figures = LiveFigures(name, self.faults, sum(d.events for d in self.devices),
                              sum(d.connections for d in self.devices), self.acked, len(self.devices),
                              stale, [r for d in self.devices for r in d.repeats])
        FIGURES.append(figures)
        print(figures.line())
        return figures


@dataclass
class LiveFigures:
    """What one live fault test's devices received and found (shaped for the session summary)."""

    name: str
    faults: int
    events: int
    connections: int
    acked_writes: int
    clients: int
    stale: list[str]
    repeats: list[str]
    lost: list[str] = field(default_factory=list)

    @property
    def requests(self) -> int:
        """Connections opened and events received, for the summary's request count."""
        return self.events + self.connections

    def line(self) -> str:
        return (f"{self.name}: faults={self.faults} events={self.events} "
                f"connections={self.connections} acked_writes={self.acked_writes} "
                f"devices={self.clients} stale={len(self.stale)} repeats={len(self.repeats)}")

    def check(self, min_events: int = 1000) -> None:
        """Fail on a stale device or a repeated ETag; and on too few events to mean anything."""
        report = [*(f"STALE {s}" for s in self.stale), *(f"REPEAT {r}" for r in self.repeats)]
        assert not report, f"{self.line()}\n" + "\n".join(report[:40])
        assert self.events >= min_events, f"only {self.events} events: {self.line()}"
