"""Real processes tests and benchmarks start and stop (a private Redis, gunicorn), and waiting for
them: a free port, and wait_until."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Collection
from pathlib import Path

import psutil
import redis
import requests
from redis.backoff import NoBackoff
from redis.retry import Retry

from dev.services import redis_server_binary
from tests.support import ROOT


def free_port(besides: Collection[int] = ()) -> int:
    """A TCP port nobody listens on right now, none of `besides` (ports already handed out but
    not bound yet: the kernel may give the same one twice in a row)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in besides:
            return port


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
        self.address = f"127.0.0.1:{self.port}"
        self.url = f"redis://{self.address}/0"
        self.dir = directory
        self.binary = binary or redis_server_binary(prefer_bundled=False)
        self.args = args  # for every start
        self.config = config  # a config file's text, for a Sentinel (it rewrites its file)
        self.process: subprocess.Popen | None = None

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

    def __enter__(self) -> "PrivateRedis":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class Gunicorn:
    """The service (or another WSGI app) under gunicorn with gunicorn.conf.py, on its own port,
    configured only by `env`: a COUNTS_* variable of the shell running the tests or the bench
    never reaches it. What the benchmarks need is a parameter: the app, the worker class, CPUs
    to pin it to (taskset), no operators' address."""

    def __init__(self, env: dict[str, str], workers: int = 2, threads: int = 8,
                 log_path: Path | None = None, *, app: str = "wsgi:app",
                 worker_class: str | None = None, cpus: str | None = None, admin: bool = True,
                 port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_port = free_port(besides={self.port}) if admin else None
        self.admin_url = f"http://127.0.0.1:{self.admin_port}"  # /metrics, the detailed /readyz
        inherited = {key: value for key, value in os.environ.items() if not key.startswith("COUNTS_")}
        admin_bind = f"127.0.0.1:{self.admin_port}" if admin else ""  # "": no operators' address
        self.env = {**inherited, "COUNTS_ADMIN_BIND": admin_bind, **env,
                    "COUNTS_BIND": f"127.0.0.1:{self.port}", "COUNTS_WORKERS": str(workers),
                    "COUNTS_THREADS": str(threads)}
        self.app, self.workers, self.worker_class, self.cpus = app, workers, worker_class, cpus
        self.process: subprocess.Popen | None = None
        self.log_path = log_path  # where its stdout and stderr go (the logs), if anywhere
        self._log = None

    def command(self) -> list[str]:
        """gunicorn with the service's settings, on `app`, pinned to `cpus` if given."""
        command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", self.app]
        if self.worker_class is not None:
            command += ["-k", self.worker_class]
        return command if self.cpus is None else ["taskset", "-c", self.cpus, *command]

    def start(self) -> "Gunicorn":
        """Start it; return once it answers HTTP and all its workers run."""
        if self.log_path is not None:
            self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            self.command(), cwd=ROOT, env=self.env, stdout=self._log or subprocess.DEVNULL,
            # Never an unread pipe: a full pipe buffer would block the server's logging.
            stderr=self._log or subprocess.DEVNULL)
        wait_until(self.answers, timeout=30, what=f"gunicorn {self.app} on {self.port} to answer")
        wait_until(lambda: len(self.worker_pids()) == self.workers, timeout=30,
                   what=f"gunicorn's {self.workers} workers")
        return self

    def answers(self) -> bool:
        """Whether it answers /healthz (any 2xx or 3xx: the bench's floor app answers 304 to
        everything); fails at once if gunicorn exited."""
        if self.process.poll() is not None:
            log = f"; its log ends:\n{self.log_tail()}" if self.log_path else ""
            raise AssertionError(f"gunicorn exited with {self.process.returncode}{log}")
        return requests.get(self.url + "/healthz", timeout=1).ok

    def pids(self) -> list[int]:
        """The master's and the workers' (what a CPU meter adds up)."""
        return [self.process.pid, *self.worker_pids()]

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
        """SIGTERM the master and wait for it (nothing if it already exited). One still running
        after 30 s is killed, and the wait's timeout raised: a shutdown that hangs is a bug."""
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
                raise
            finally:
                if self._log is not None:
                    self._log.close()
                    self._log = None
                self.process = None

    def __enter__(self) -> "Gunicorn":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


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

    def patch(self, path: str, **kwargs) -> requests.Response:
        return self._call("PATCH", path, **kwargs)
