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

import psutil
import redis
import requests
from redis.backoff import NoBackoff
from redis.retry import Retry

from dev.services import redis_server_binary
from tests.support import ROOT


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# What a service that is not ready (or not back) yet raises: its port refuses or drops the
# connection, or it does not answer in time. wait_until retries these and nothing else.
NOT_READY = (requests.ConnectionError, requests.Timeout, redis.ConnectionError, redis.TimeoutError,
             ConnectionError)


def wait_until(predicate, timeout: float = 15.0, interval: float = 0.02, what: str = "condition"):
    """Poll `predicate` until it is true; fail the test after `timeout` seconds.

    A falsy answer, or a NOT_READY error, means "not yet"; any other exception is a bug in the
    test or the service and fails the test at once, instead of turning into a timeout.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except NOT_READY as error:
            last_error = error
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                         + (f" (last: {last_error!r})" if last_error is not None else ""))


class PrivateRedis:
    """A redis-server (or a Sentinel) of the test's own, on its own port and directory, that it may
    stop, flush, kill or restart. Tests, the replicated setups (clusters.py) and the benchmarks all
    start theirs with this."""

    def __init__(self, directory: Path, binary: str | None = None, *, args: tuple[str, ...] = (),
                 config: str | None = None, port: int | None = None):
        self.port = port or free_port()
        self.dir = directory
        self.binary = binary or redis_server_binary(prefer_bundled=False)
        self.args = args  # for every start
        self.config = config  # a config file's text, for a Sentinel (it rewrites its file)
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def address(self) -> str:
        """host:port"""
        return f"127.0.0.1:{self.port}"

    def client(self) -> redis.Redis:
        """A client that does not retry: after SHUTDOWN or a kill, retries would only wait on a
        dead port, and a test that stopped the server wants the error."""
        return redis.Redis(port=self.port, socket_timeout=5, socket_connect_timeout=5,
                           retry=Retry(NoBackoff(), 0))

    def start(self, extra: tuple[str, ...] = (), timeout: float = 15.0) -> "PrivateRedis":
        """Start it (loading dump.rdb from its directory if one was saved) and wait for PONG."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.config is not None:
            conf = self.dir / "server.conf"
            conf.write_text(self.config.format(port=self.port, dir=self.dir))
            command = [self.binary, str(conf), "--sentinel", *self.args, *extra]
        else:
            command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                       "--dir", str(self.dir), "--save", "", "--appendonly", "no", *self.args, *extra]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: self.client().ping(), timeout=timeout, what=f"redis on {self.port} to answer")
        return self

    @property
    def alive(self) -> bool:
        """Whether its process runs."""
        return self.process is not None and self.process.poll() is None

    def stop(self, save: bool = False) -> None:
        """Stop it; with save=True its markers survive into the next start (as after a blip)."""
        if self.process is None:
            return
        with contextlib.suppress(redis.ConnectionError):  # shutdown drops the connection
            self.client().shutdown(save=save, nosave=not save)
        self.process.wait(timeout=10)
        self.process = None

    def kill(self) -> None:
        """SIGKILL: no goodbye, nothing flushed, as a crashed machine."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)


class TcpProxy:
    """A TCP proxy in front of a service that a test can cut (refuse), hang (accept, never answer)
    or stall (keep every connection open, pass no bytes: a frozen peer), or in which it can
    stall only the connections that carry given bytes (stall_on)."""

    def __init__(self, target_port: int, narrow: bool = False):
        self.target_port = target_port
        self.mode = "forward"
        self.listener = socket.create_server(("127.0.0.1", 0))
        if narrow:
            # Loopback's 64-KB segments let a client buffer megabytes into a peer that stopped
            # reading; the smallest window and segments make its writes block after tens of KB
            # (40-80 KB measured), as on a network when the peer freezes (a full send buffer).
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
            self.listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 88)
        self.port = self.listener.getsockname()[1]
        self.connections: list[socket.socket] = []
        self.held = 0  # chunks a 'stall' has held so far
        self.stall_trigger: bytes | None = None  # see stall_on
        self.stalled: list[list[bool]] = []  # the links stall_on froze: [True] until thawed
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
            link = [False]  # frozen by stall_on: both directions of this connection
            for a, b, outbound in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pipe, args=(a, b, link, outbound),
                                 daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, link: list[bool],
              outbound: bool) -> None:
        try:
            while True:
                while link[0]:  # frozen by stall_on: nothing read, so the writer backs up
                    time.sleep(0.01)
                data = self._receive(source, link, outbound)
                if data is None:
                    continue  # it froze on these bytes, left unread
                if not data:
                    break
                if self.mode == "stall":
                    self.held += 1
                while self.mode == "stall" or link[0]:  # hold the bytes until the peer "thaws"
                    time.sleep(0.01)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            # Shutting both ends down stops the other direction's thread; each thread closes the
            # socket it reads, so no socket is left for the garbage collector.
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            source.close()

    def _receive(self, source: socket.socket, link: list[bool], outbound: bool) -> bytes | None:
        """The next bytes from `source` (b"" at its end), or None when they are a client's
        holding the stall_on trigger: they freeze the connection and stay unread (read, they
        would let the kernel take more from the writer)."""
        trigger = self.stall_trigger
        if not outbound or trigger is None:
            return source.recv(65536)
        data = source.recv(65536, socket.MSG_PEEK)
        if trigger not in data:
            return source.recv(len(data))
        link[0] = True
        self.held += 1
        with self.lock:
            self.stalled.append(link)
        return None

    def set_mode(self, mode: str) -> None:
        """'forward', 'cut' (drop every connection, refuse new ones), 'hang' (drop every
        connection, accept new ones and never answer) or 'stall' (keep every connection, old and
        new, but pass no bytes either way until the mode changes back to 'forward'). Any mode
        thaws the connections stall_on froze, and stops freezing more."""
        self.mode = mode
        self.stall_trigger = None
        with self.lock:
            stalled, self.stalled = self.stalled, []
        for link in stalled:
            link[0] = False
        if mode not in ("forward", "stall"):
            with self.lock:
                connections, self.connections = self.connections, []
            for sock in connections:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                    sock.close()
                except OSError:
                    pass

    def stall_on(self, trigger: bytes) -> None:
        """Stall each connection from the first chunk its client sends containing `trigger`
        (that chunk included), as 'stall' does, while the others keep forwarding: one frozen
        peer, such as the connection that carried a SUBSCRIBE. set_mode thaws them."""
        self.stall_trigger = trigger

    def close(self) -> None:
        self.set_mode("cut")
        self.listener.close()


def redis_url_through(proxy: TcpProxy) -> str:
    """The URL of the Redis behind `proxy`, reached through it."""
    return f"redis://127.0.0.1:{proxy.port}/0"


class Gunicorn:
    """The real service under gunicorn, on its own port, with the given environment."""

    def __init__(self, env: dict[str, str], workers: int = 2, threads: int = 8,
                 log_path: Path | None = None):
        self.port, self.admin_port = free_port(), free_port()
        self.env = {**os.environ, "COUNTS_ADMIN_BIND": f"127.0.0.1:{self.admin_port}", **env,
                    "COUNTS_BIND": f"127.0.0.1:{self.port}", "COUNTS_WORKERS": str(workers),
                    "COUNTS_THREADS": str(threads)}
        self.process = None
        self.log_path = log_path  # where its stdout and stderr go (the logs), if anywhere
        self._log = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        """The operators' address: /metrics and the detailed /readyz."""
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self) -> "Gunicorn":
        if self.log_path is not None:
            self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
            cwd=ROOT, env=self.env, stdout=self._log or subprocess.DEVNULL,
            # Never an unread pipe: a full pipe buffer would block the server's logging.
            stderr=self._log or subprocess.DEVNULL)
        wait_until(lambda: requests.get(self.url + "/healthz", timeout=1).ok,
                   what="gunicorn to answer")
        return self

    def worker_pids(self) -> set[int]:
        """The master's live worker processes now (not the dead, unreaped ones, nor one reaped
        between listing the children and asking its status)."""
        workers = set()
        for child in psutil.Process(self.process.pid).children():
            with contextlib.suppress(psutil.NoSuchProcess):
                if child.status() != psutil.STATUS_ZOMBIE:
                    workers.add(child.pid)
        return workers

    def replace_worker(self, victim: int) -> None:
        """SIGKILL one worker; return once the master has put exactly one new worker in its place."""
        workers = self.worker_pids()
        os.kill(victim, signal.SIGKILL)

        def replaced() -> bool:
            """The victim gone, one new worker in its place."""
            now = self.worker_pids()
            return victim not in now and len(now) == len(workers) and len(now - workers) == 1

        wait_until(replaced, timeout=15, what=f"the master to replace worker {victim}")

    def log_tail(self, lines: int = 40) -> str:
        """The end of its log, for failure messages."""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM the master and wait for it (nothing if it already exited)."""
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            finally:
                if self._log is not None:
                    self._log.close()
                    self._log = None
            self.process = None


class LiveClient:
    """requests against a running service, shaped like Flask's test client (so api.Api works)."""

    def __init__(self, base_url: str):
        self.base_url = base_url

    def _call(self, method: str, path: str, **kwargs) -> requests.Response:
        response = requests.request(method, self.base_url + path, timeout=10, **kwargs)
        response.get_json = response.json  # the one test-client method api.Api uses
        return response

    def get(self, path: str, **kwargs) -> requests.Response:
        return self._call("GET", path, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return self._call("POST", path, **kwargs)
