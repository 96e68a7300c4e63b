"""The live benchmark's clients: many SSE, WebSocket and long-poll connections on one asyncio
(uvloop) loop, each speaking just enough of its protocol, recording when counts arrive."""

import asyncio
import base64
import json
import os
import struct
import time
from dataclasses import dataclass, field

from tests.support.sse import SseParser

HOST = "127.0.0.1"
LONG_POLL_WAIT = 25  # seconds, the service's default cap


@dataclass(slots=True)
class Client:
    """One user's live connection and what arrived on it."""

    user: str
    token: str
    kind: str  # sse, ws, long-poll
    etag: str | None = None
    total: int | None = None
    requests: int = 0  # HTTP requests sent (connections opened, long-polls)
    arrivals: list[float] = field(default_factory=list)  # perf_counter of each counts received
    error: str | None = None

    def received(self, etag: str, body: dict) -> None:
        """Counts arrived."""
        self.arrivals.append(time.perf_counter())
        self.etag, self.total = etag, body["total"]


def _head(path: str, token: str, extra: dict[str, str]) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: {HOST}", f"Authorization: Bearer {token}",
             *(f"{k}: {v}" for k, v in extra.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _response_head(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes]]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0][9:12]), headers


async def sse(client: Client, port: int, stop: asyncio.Event) -> None:
    """An SSE stream, read chunk by chunk until stopped."""
    reader, writer = await asyncio.open_connection(HOST, port)
    client.requests += 1
    writer.write(_head(f"/v1/users/{client.user}/unread-counts/stream", client.token,
                       {"Accept": "text/event-stream"}))
    try:
        status, _ = await _response_head(reader)
        if status != 200:
            client.error = f"sse {status}"
            return
        buffer, parser = b"", SseParser()
        while not stop.is_set():
            size = int((await reader.readline()).strip() or b"0", 16)
            if size == 0:
                return
            buffer += (await reader.readexactly(size + 2))[:-2]
            while b"\n\n" in buffer:  # a whole event: its lines, then the blank line ending it
                block, buffer = buffer.split(b"\n\n", 1)
                for line in [*block.decode().split("\n"), ""]:
                    event = parser.feed(line)
                    if event is not None and event.kind == "counts":
                        client.received(event.etag, event.counts)
    finally:
        writer.close()


async def websocket(client: Client, port: int, stop: asyncio.Event) -> None:
    """A WebSocket, answering pings, until stopped."""
    reader, writer = await asyncio.open_connection(HOST, port)
    client.requests += 1
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(_head(f"/v1/users/{client.user}/unread-counts/ws", client.token, {
        "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": key,
        "Sec-WebSocket-Version": "13"}))
    try:
        status, _ = await _response_head(reader)
        if status != 101:
            client.error = f"ws {status}"
            return
        while not stop.is_set():
            first, second = await reader.readexactly(2)
            length = second & 0x7F
            if length == 126:
                length = struct.unpack("!H", await reader.readexactly(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", await reader.readexactly(8))[0]
            payload = await reader.readexactly(length)
            opcode = first & 0x0F
            if opcode == 1:
                message = json.loads(payload)
                client.received(message["etag"], message["counts"])
            elif opcode == 9:  # ping: a pong, masked as a client must
                mask = os.urandom(4)
                masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
                writer.write(bytes([0x8A, 0x80 | len(payload)]) + mask + masked)
            elif opcode == 8:
                return
    finally:
        writer.close()


async def long_poll(client: Client, port: int, stop: asyncio.Event) -> None:
    """Long-polls on one keep-alive connection, each with the ETag held, until stopped."""
    reader, writer = await asyncio.open_connection(HOST, port)
    path = f"/v1/users/{client.user}/unread-counts"
    try:
        while not stop.is_set():
            extra = {"If-None-Match": client.etag, "Prefer": f"wait={LONG_POLL_WAIT}"} \
                if client.etag else {}
            writer.write(_head(path, client.token, extra))
            client.requests += 1
            status, headers = await _response_head(reader)
            body = await reader.readexactly(int(headers.get(b"content-length", b"0")))
            if status == 200:
                client.received(headers[b"etag"].decode(), json.loads(body))
            elif status != 304:
                client.error = f"long-poll {status}"
                return
    finally:
        writer.close()


TRANSPORTS = {"sse": sse, "ws": websocket, "long-poll": long_poll}


async def run_client(client: Client, port: int, stop: asyncio.Event) -> None:
    """One client, reconnecting (after a second) if its connection ends before `stop`."""
    while not stop.is_set():
        try:
            await TRANSPORTS[client.kind](client, port, stop)
        except (OSError, asyncio.IncompleteReadError, ValueError, KeyError) as error:
            client.error = f"{client.kind}: {type(error).__name__}"
        if not stop.is_set():
            await asyncio.sleep(1)
