"""Serve an ASGI app over TLS with hypercorn (HTTP/2 by ALPN, or HTTP/1.1) on a background thread."""

import asyncio
import logging
import socket
import threading

from hypercorn.asyncio import serve
from hypercorn.config import Config

from tests.support.pushfakes.tls import TestPKI
from tests.support.services import free_port


def _quiet_cancellation(loop, context) -> None:
    """Connections cancelled by a shutdown are expected; anything else is reported as usual."""
    if not isinstance(context.get("exception"), asyncio.CancelledError):
        loop.default_exception_handler(context)


class FakeServer:
    """One fake provider on https://127.0.0.1:<port>, until stop()."""

    def __init__(self, app, pki: TestPKI, port: int | None = None,
                 alpn: tuple[str, ...] = ("h2", "http/1.1")):
        self.app, self.port = app, port or free_port()
        self.config = Config()
        self.config.bind = [f"127.0.0.1:{self.port}"]
        self.config.certfile, self.config.keyfile = pki.cert_file, pki.key_file
        self.config.alpn_protocols = list(alpn)
        self.config.accesslog = None
        self.config.errorlog = logging.getLogger("tests.support.pushfakes")
        self.config.graceful_timeout = 0.5  # a hung request must not hold the test's teardown
        self.loop = asyncio.new_event_loop()
        self._shutdown: asyncio.Event | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"fake-{self.port}", daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"https://{self.host}"

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.set_exception_handler(_quiet_cancellation)

        async def main():
            self._shutdown = asyncio.Event()
            self.loop.call_soon(self._started.set)
            await serve(self.app, self.config, shutdown_trigger=self._shutdown.wait)

        self.loop.run_until_complete(main())
        self.loop.close()

    def start(self) -> "FakeServer":
        """Start serving; returns once the port accepts connections."""
        self._thread.start()
        self._started.wait(10)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                threading.Event().wait(0.02)
        raise RuntimeError(f"fake server on {self.port} did not start")

    def stop(self) -> None:
        """Stop serving (hung requests are cancelled) and join the thread."""
        if self._shutdown is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._shutdown.set)
        self._thread.join(10)


class Trouble:
    """How a fake misbehaves, switchable while it runs: answer `status` (with Retry-After) for a
    while, or hang (accept the request, never answer)."""

    def __init__(self):
        self.status: int | None = None
        self.retry_after: str | None = None
        self.until = 0.0
        self.hanging = False
        self.requests_refused = 0
        self.holding: threading.Event | None = None

    def hold(self) -> threading.Event:
        """Take requests in (a push service records them) but answer only once the returned event
        is set: the provider has the push, its sender does not know yet."""
        self.holding = threading.Event()
        return self.holding

    async def answer_when_released(self) -> None:
        """Wait while holding (see hold())."""
        while self.holding is not None and not self.holding.is_set():
            await asyncio.sleep(0.01)

    def fail(self, status: int, retry_after: str | None = None, seconds: float = 3600.0) -> None:
        """Answer every request with `status` for `seconds`."""
        import time

        self.status, self.retry_after, self.until = status, retry_after, time.monotonic() + seconds

    def hang(self, on: bool = True) -> None:
        """Accept requests and never answer them (until switched off; hung ones stay hung)."""
        self.hanging = on

    def heal(self) -> None:
        """Back to answering properly."""
        self.status, self.hanging = None, False
        if self.holding is not None:
            self.holding.set()

    async def intervene(self, send) -> bool:
        """Misbehave on this request if told to; True if the request was dealt with."""
        import time

        if self.hanging:
            self.requests_refused += 1
            await asyncio.sleep(3600)
        if self.status is not None and time.monotonic() < self.until:
            self.requests_refused += 1
            headers = [(b"retry-after", self.retry_after.encode())] if self.retry_after else []
            await respond(send, self.status, b"", headers)
            return True
        return False


async def read_body(receive) -> bytes:
    """The whole request body."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def respond(send, status: int, body: bytes = b"", headers: list | None = None) -> None:
    """Send a complete response."""
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})
