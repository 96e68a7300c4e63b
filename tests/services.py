"""Real processes the tests start and stop: a private Redis, a cuttable TCP proxy, gunicorn."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import redis
import requests
from redis.backoff import NoBackoff
from redis.retry import Retry

from counts.devservices import redis_server_binary

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout: float = 15.0, interval: float = 0.02, what: str = "condition"):
    """Poll `predicate` until it is true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception:
            pass
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class PrivateRedis:
    """A redis-server of the test's own, on its own port and directory, that it may stop or flush."""

    def __init__(self, directory: Path, binary: str | None = None):
        self.port = free_port()
        self.dir = directory
        self.binary = binary or redis_server_binary(prefer_bundled=False)
        self.process = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        """A client that does not retry: after SHUTDOWN, retries would only wait on a dead port."""
        return redis.Redis(port=self.port, socket_timeout=5, retry=Retry(NoBackoff(), 0))

    def start(self, extra: tuple[str, ...] = ()) -> "PrivateRedis":
        """Start it (loading dump.rdb from its directory if one was saved) and wait for PONG."""
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.dir), "--save", "", "--appendonly", "no", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: self.client().ping(), what="private redis to answer")
        return self

    def stop(self, save: bool = False) -> None:
        """Stop it; with save=True its markers survive into the next start (as after a blip)."""
        if self.process is None:
            return
        with contextlib.suppress(redis.ConnectionError):  # shutdown drops the connection
            self.client().shutdown(save=save, nosave=not save)
        self.process.wait(timeout=10)
        self.process = None


class TcpProxy:
    """A TCP proxy in front of a service that a test can cut (refuse) or hang (accept, never answer)."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.mode = "forward"
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.mode == "cut":
                client.close()
                continue
            with self.lock:
                self.connections.append(client)
            if self.mode == "hang":
                continue  # accepted, never answered
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.connections.append(upstream)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def set_mode(self, mode: str) -> None:
        """'forward', 'cut' (drop every connection, refuse new ones) or 'hang'."""
        self.mode = mode
        if mode != "forward":
            with self.lock:
                connections, self.connections = self.connections, []
            for sock in connections:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                    sock.close()
                except OSError:
                    pass

    def close(self) -> None:
        self.set_mode("cut")
        self.listener.close()


class Gunicorn:
    """The real service under gunicorn, on its own port, with the given environment."""

    def __init__(self, env: dict[str, str], workers: int = 2, threads: int = 8):
        self.port = free_port()
        self.env = {**os.environ, **env, "COUNTS_BIND": f"127.0.0.1:{self.port}",
                    "COUNTS_WORKERS": str(workers), "COUNTS_THREADS": str(threads)}
        self.process = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Gunicorn":
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
            cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_until(lambda: requests.get(self.url + "/healthz", timeout=1).ok,
                   what="gunicorn to answer")
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            finally:
                self.process.stderr.close()
            self.process = None
