"""A small asyncio HTTP/1.1 keep-alive client, cheap enough per request to not be the bottleneck.

It speaks just what the benchmark needs (Content-Length bodies, no-body statuses, keep-alive,
`Connection: close`) and counts the bytes it writes and reads, so bytes per poll are measured on
the socket, not estimated.
"""

import asyncio
import time
from dataclasses import dataclass

NO_BODY = (204, 304)


class HttpError(Exception):
    """The connection failed, timed out, or the answer could not be parsed."""


@dataclass(slots=True)
class Response:
    """One parsed answer; `size` is its bytes on the socket (status line, headers, body)."""

    status: int
    headers: dict[bytes, bytes]
    body: bytes
    size: int


class Connection(asyncio.Protocol):
    """One keep-alive connection; one request in flight at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future | None = None
        self.closed = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(HttpError(f"connection lost: {exc!r}"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is not None and not self.waiter.done():
            try:
                response = self._parse()
            except (ValueError, IndexError) as error:
                self.waiter.set_exception(HttpError(f"bad response: {error!r}"))
                return
            if response is not None:
                self.waiter.set_result(response)

    def _parse(self) -> Response | None:
        """A complete response from the buffer (removed from it), or None if more bytes are due."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        lines = bytes(self.buffer[:end]).split(b"\r\n")
        status = int(lines[0][9:12])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        length = 0 if status in NO_BODY else int(headers.get(b"content-length", b"-1"))
        if length < 0:
            raise ValueError("only Content-Length bodies are supported")
        total = end + 4 + length
        if len(self.buffer) < total:
            return None
        body = bytes(self.buffer[end + 4:total])
        del self.buffer[:total]
        if headers.get(b"connection", b"").lower() == b"close":
            self.close()
        return Response(status, headers, body, total)

    def send(self, data: bytes) -> asyncio.Future:
        """Write a request; the future resolves to its Response."""
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self.waiter

    def close(self) -> None:
        """Close the socket (the pool replaces the connection)."""
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Pool:
    """A fixed number of keep-alive connections to one server, shared by many simulated clients."""

    def __init__(self, host: str, port: int, size: int, timeout: float = 5.0):
        self.host, self.port, self.size, self.timeout = host, port, size, timeout
        self.idle: asyncio.Queue[Connection | None] = asyncio.Queue()
        for _ in range(size):
            self.idle.put_nowait(None)  # connected on first use
        self.bytes_sent = 0
        self.bytes_received = 0
        self.reconnects = 0

    async def _connect(self) -> Connection:
        """Open a new connection."""
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(Connection, self.host, self.port)
        return conn

    async def request(self, data: bytes) -> tuple[Response, float]:
        """Send one request on an idle connection; (response, perf_counter() when it was sent)."""
        loop = asyncio.get_running_loop()
        conn = await self.idle.get()
        try:
            if conn is None or conn.closed:
                self.reconnects += conn is not None
                conn = await self._connect()
            sent_at = time.perf_counter()  # uvloop's loop.time() ticks in whole milliseconds
            future = conn.send(data)
            timer = loop.call_later(self.timeout, _expire, future)
            try:
                response = await future
            finally:
                timer.cancel()
            self.bytes_sent += len(data)
            self.bytes_received += response.size
            return response, sent_at
        except (OSError, HttpError):
            if conn is not None:
                conn.close()
            conn = None
            raise
        finally:
            self.idle.put_nowait(conn)

    def close(self) -> None:
        """Close every idle connection."""
        while not self.idle.empty():
            conn = self.idle.get_nowait()
            if conn is not None:
                conn.close()


def _expire(future: asyncio.Future) -> None:
    """Fail a request that got no answer in time."""
    if not future.done():
        future.set_exception(HttpError("timeout"))


def get_request(path: str, headers: dict[str, str]) -> bytes:
    """The bytes of a GET request (HTTP/1.1, keep-alive) without its final blank line."""
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n").encode()


def post_request(path: str, headers: dict[str, str], body: bytes) -> bytes:
    """The bytes of a JSON POST request."""
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json",
             f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
