"""gunicorn process faults under load: a worker SIGKILLed, the master SIGTERMed.

A killed worker is replaced by the master and costs a client at most one retried request (a write
it cut between commit and bump is repaired by the outbox). SIGTERM finishes the requests in
flight, leaves no write half done (every commit bumped, every conversation's seqs dense), and
gunicorn exits 0 within its graceful timeout; a restarted service then serves every client right.
"""

import json
import os
import re
import runpy
import signal
import socket
from unittest import mock

import psutil

from counts.identity import mint_token
from tests.faults.traffic import REQUEST_TIMEOUT, Traffic
from tests.faults.verdict import pending_bumps
from tests.faults.world import build_world
from tests.support import ROOT
from tests.support.environment import SECRET
from tests.support.services import wait_until

with mock.patch.dict(os.environ, {"COUNTS_ENV": "development"}):  # enough settings to load it
    GRACEFUL_TIMEOUT = runpy.run_path(str(ROOT / "gunicorn.conf.py"))["graceful_timeout"]


def test_killed_worker_is_replaced_and_clients_at_most_retry(start_service, private_redis, pg):
    """SIGKILL each worker in turn under load: replacements serve, clients retry at most once."""
    service = start_service(private_redis.url)
    world = build_world(service.url)
    with Traffic(service.url, world, retry_dropped=True) as traffic:
        traffic.advance(polls=100, acked=20)
        traffic.snapshot_idle()
        for victim in sorted(service.worker_pids()):  # afterwards only replacements can serve
            with traffic.fault("worker SIGKILLed"):
                service.replace_worker(victim)
            traffic.advance(polls=60, acked=15)
    traffic.finish(pg, "gunicorn worker SIGKILLed x2").check()


def test_sigterm_finishes_in_flight_requests_and_leaves_no_write_half_done(
        start_service, private_redis, pg):
    """SIGTERM mid-traffic: held requests complete, every commit is bumped, exit status 0."""
    service = start_service(private_redis.url)
    world = build_world(service.url)
    conversation = world.busy[0]
    sender = world.members[conversation][0]
    with Traffic(service.url, world) as traffic:
        traffic.advance(polls=100, acked=20)
        traffic.snapshot_idle()
        held = [HeldRequest(service.port, f"/v1/conversations/{conversation}/messages",
                            sender, {"sender_id": sender, "body": f"held {n}"}) for n in range(3)]
        with traffic.fault("SIGTERM to the gunicorn master"):
            traffic.allow_dropped()  # a stopping service may refuse new requests
            master = service.process.pid
            service.process.send_signal(signal.SIGTERM)
            wait_until(lambda: not listening(master, service.port), timeout=10,
                       what="the master to close its listener and signal the workers")
            answers = [request.release() for request in held]  # in flight across the SIGTERM
            for status, body in answers:
                if status == 201:
                    traffic.acknowledged(body["message_id"], conversation)
            exit_status = service.process.wait(timeout=GRACEFUL_TIMEOUT + 5)
            unbumped = pending_bumps(pg)  # before a new service's drainer could hide any
            restarted = start_service(private_redis.url)
            traffic.retarget(restarted.url)
            traffic.allow_dropped(False)
        traffic.advance(polls=100, acked=20)
    figures = traffic.finish(pg, "gunicorn SIGTERM under load")
    assert [status for status, _ in answers] == [201] * len(held), answers
    assert exit_status == 0, service.log_tail()
    assert unbumped == 0, f"{unbumped} committed writes were left unbumped by the shutdown"
    figures.check()


def listening(pid: int, port: int) -> bool:
    """Whether process `pid` itself still holds a listening socket on `port`."""
    return any(conn.status == psutil.CONN_LISTEN and conn.laddr.port == port
               for conn in psutil.Process(pid).net_connections(kind="tcp"))


class HeldRequest:
    """A POST whose body waits for release(): its 100 Continue proves a worker thread holds it."""

    def __init__(self, port: int, path: str, user: str, body: dict):
        self.body = json.dumps(body).encode()
        head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json",
                f"Content-Length: {len(self.body)}", "Expect: 100-continue", "Connection: close",
                f"Authorization: Bearer {mint_token(SECRET, user)}"]
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=REQUEST_TIMEOUT)
        self.sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        self.received = b""
        while b"\r\n\r\n" not in self.received:
            chunk = self.sock.recv(65536)
            assert chunk, f"closed before 100 Continue: {self.received!r}"
            self.received += chunk
        interim, _, self.received = self.received.partition(b"\r\n\r\n")
        assert interim.startswith(b"HTTP/1.1 100"), interim

    def release(self) -> tuple[int | None, dict | None]:
        """Send the body; the status and JSON of a complete response, or (None, None)."""
        try:
            self.sock.sendall(self.body)
            while chunk := self.sock.recv(65536):
                self.received += chunk
        except OSError:
            return None, None
        finally:
            self.sock.close()
        head, _, payload = self.received.partition(b"\r\n\r\n")
        length = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
        if not head or length is None or len(payload) != int(length.group(1)):
            return None, None  # no answer, or one cut short
        return int(head.split()[1]), json.loads(payload)
