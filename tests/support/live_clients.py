"""Clients of the live transports for tests: an SSE reader and a WebSocket reader, each on its own
thread, putting what arrives on a queue, and a long-poller; all bounded in time."""

import contextlib
import json
import queue
import socket
import threading
import time

import requests
import websocket

from tests.support.sse import Event, SseParser

READ_TIMEOUT = 30.0  # seconds a read may block: far above any heartbeat the tests configure


class SseStream:
    """`GET .../stream` read by a thread: every event, comment and retry on `events`."""

    def __init__(self, url: str, headers: dict[str, str] | None = None):
        self.events: queue.Queue[Event] = queue.Queue()
        self.response = requests.get(url, headers={"Accept": "text/event-stream", **(headers or {})},
                                     stream=True, timeout=READ_TIMEOUT)
        self.status = self.response.status_code
        self.headers = self.response.headers
        if self.status == 200:
            threading.Thread(target=self._read, daemon=True).start()
        else:
            self.body = self.response.json()
            self.response.close()

    def _read(self) -> None:
        parser = SseParser()
        try:
            for raw in self.response.iter_lines(chunk_size=1, decode_unicode=False):
                event = parser.feed(raw.decode())
                if event is not None:
                    self.events.put(event)
        except (requests.RequestException, OSError, AttributeError):
            pass  # closed by us or cut by the server
        self.response.close()
        self.events.put(Event("end"))

    def next(self, timeout: float = READ_TIMEOUT, kinds: tuple[str, ...] = ("counts", "end")) -> Event:
        """The next event of one of `kinds` (others are skipped); fails after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {kinds} event within {timeout}s") from None
            if event.kind in kinds:
                return event

    def close(self) -> None:
        """Hang up. The socket is shut down first: closing the response alone waits for the
        reading thread, blocked until the next heartbeat or READ_TIMEOUT."""
        sock = getattr(getattr(self.response.raw, "connection", None), "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.response.close()


class WsStream:
    """A WebSocket to `.../ws`, read by a thread: counts frames, then an `end` with the close."""

    def __init__(self, url: str, headers: list[str] | None = None):
        self.events: queue.Queue[Event] = queue.Queue()
        self.pings = 0
        self.ws = websocket.create_connection(url, timeout=READ_TIMEOUT, header=headers or [])
        self.handshake_headers = self.ws.getheaders()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            while True:
                opcode, frame = self.ws.recv_data_frame(control_frame=True)
                if opcode == websocket.ABNF.OPCODE_TEXT:
                    message = json.loads(frame.data)
                    self.events.put(Event("counts", message["etag"], message["counts"]))
                elif opcode == websocket.ABNF.OPCODE_PING:
                    self.pings += 1
                    self.ws.pong(frame.data)
                elif opcode == websocket.ABNF.OPCODE_CLOSE:
                    code = int.from_bytes(frame.data[:2], "big") if len(frame.data) >= 2 else None
                    self.events.put(Event("end", text=f"{code} {frame.data[2:].decode()}"))
                    break
        except (websocket.WebSocketException, OSError, AttributeError):
            self.events.put(Event("end"))
        self.ws.shutdown()

    next = SseStream.next

    def close(self) -> None:
        """Hang up."""
        if self.ws.connected:
            self.ws.close(timeout=1)
        self.ws.shutdown()


def ws_url(http_url: str) -> str:
    """The ws:// form of an http:// URL."""
    return "ws" + http_url.removeprefix("http")


def open_stream(base_url: str, user, auth: dict[str, str], kind: str) -> SseStream | WsStream:
    """A user's stream of counts, "sse" or "ws", once its first counts arrived."""
    path = f"{base_url}/v1/users/{user}/unread-counts/"
    stream = SseStream(path + "stream", auth) if kind == "sse" else \
        WsStream(ws_url(path + "ws"), [f"Authorization: {auth['Authorization']}"])
    assert stream.next().kind == "counts"
    return stream


def counts_reaching(stream: SseStream | WsStream, total: int, timeout: float) -> Event:
    """The first counts event saying `total` unread within `timeout` seconds (earlier ones, such
    as the new epoch a failover brings, are skipped); fails after it."""
    deadline = time.monotonic() + timeout
    while True:
        event = stream.next(timeout=deadline - time.monotonic())
        assert event.kind == "counts", f"the stream ended: {event.text}"
        if event.counts["total"] == total:
            return event


def long_poll(base_url: str, user, auth: dict[str, str], etag: str,
              wait: int) -> requests.Response:
    """A conditional GET of a user's counts that prefers to wait up to `wait` seconds."""
    return requests.get(f"{base_url}/v1/users/{user}/unread-counts", timeout=wait + 10,
                        headers={**auth, "If-None-Match": etag, "Prefer": f"wait={wait}"})


def settled(api, user, stream: SseStream | WsStream, event: Event, deadline: float) -> Event:
    """The stream's last counts once a poll (`api`: an api.Api) answers 304 to their marker;
    fails at `deadline` (time.monotonic()). Right after a failover a bump the outbox repeats (its
    first try timed out, yet ran) moves the marker once more, and a poll may meet a worker still
    looking for the new primary (a 200 with no marker): the stream must follow the first, and a
    poll soon agrees."""
    while api.counts(user, etag=event.etag).status_code != 304:
        assert time.monotonic() < deadline, f"{user}: the stream stayed on {event.etag}: stale"
        with contextlib.suppress(queue.Empty):  # nothing new within 0.2 s: ask again
            arrived = stream.events.get(timeout=0.2)
            assert arrived.kind != "end", f"{user}: the stream ended"
            event = arrived if arrived.kind == "counts" else event
    return event
