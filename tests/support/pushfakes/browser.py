"""Try Web Push on one machine: a local push service, and a "browser" subscribed to it that prints
each push it receives, decrypted. For people trying `make run`; test code, never the service's.

    eval "$(.venv/bin/python -m tests.support.pushfakes.browser env)"   # before `make run`, same shell
    .venv/bin/python -m tests.support.pushfakes.browser run --user "$BOB" --token "$BOB_TOKEN" &
    .venv/bin/python -m tests.support.pushfakes.browser wait registered   # then: wait 1, wait 2, ...

`env` makes a CA and a certificate for 127.0.0.1 under --dir, picks a free port for the push
service, and prints the two settings that let the service trust and reach it (and no other);
`run` serves it on that port, subscribes with the service's /v1/push/webpush-key, registers the
subscription as the user's device, and prints every push as a JSON line until stopped; `wait`
returns once that browser has registered, or has received N pushes since it started, so that a
pasted session goes on only when what it waits for has happened.
"""

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path

import requests

from tests.support.pushfakes.server import FakeServer
from tests.support.pushfakes.tls import TestPKI, make_pki
from tests.support.pushfakes.webpush import PushService, Subscriber
from tests.support.services import free_port

DEFAULT_PORT = 8443  # when `env` was not run in this directory
WAIT_S = 30.0


def pki_in(directory: Path) -> TestPKI:
    """The CA and certificate under `directory`, made on first use."""
    if not (directory / "ca.pem").exists():
        directory.mkdir(parents=True, exist_ok=True)
        return make_pki(directory)
    return TestPKI(*(str(directory / f"{name}.pem") for name in ("ca", "cert", "key")))


def recorded_port(directory: Path) -> int:
    """The port `env` chose for this directory's push service."""
    path = directory / "port"
    return int(path.read_text()) if path.exists() else DEFAULT_PORT


def run(args: argparse.Namespace) -> None:
    """Serve, subscribe, register, print pushes until interrupted."""
    received, registered_mark = args.dir / "received.jsonl", args.dir / "registered"
    received.unlink(missing_ok=True)
    registered_mark.unlink(missing_ok=True)
    service = PushService()
    server = FakeServer(service, pki_in(args.dir), port=args.port or recorded_port(args.dir)).start()
    service.origin = server.url
    key = requests.get(f"{args.url}/v1/push/webpush-key", timeout=10).json()["public_key"]
    browser = Subscriber(service, server.url, key)
    done = threading.Event()

    def show(message) -> None:
        line = json.dumps({"urgency": message.headers.get("urgency"), "ttl": message.headers.get("ttl"),
                           "push": json.loads(browser.decrypt(message.body))})
        print(line, flush=True)
        with received.open("a") as record:
            record.write(line + "\n")

    service.on_receive = show
    registered = requests.post(f"{args.url}/v1/users/{args.user}/devices", timeout=10,
                               headers={"Authorization": f"Bearer {args.token}"},
                               json={"platform": "webpush", "subscription": browser.subscription()})
    print(f"registered: {registered.status_code} {registered.text.strip()}", flush=True)
    registered_mark.write_text(str(registered.status_code))
    signal.signal(signal.SIGINT, lambda *_: done.set())
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    done.wait()
    server.stop()
    # Gone with the browser, so that a `wait` before the next `run` cannot read this one's.
    received.unlink(missing_ok=True)
    registered_mark.unlink(missing_ok=True)


def wait(directory: Path, what: str, timeout: float) -> None:
    """Return once the browser has registered (`registered`), or received `what` pushes."""
    def arrived() -> bool:
        if what == "registered":
            return (directory / "registered").exists()
        path = directory / "received.jsonl"
        return path.exists() and len(path.read_text().splitlines()) >= int(what)

    deadline = time.monotonic() + timeout
    while not arrived():
        if time.monotonic() > deadline:
            sys.exit(f"waited {timeout:.0f} s: the browser has not "
                     f"{'registered' if what == 'registered' else f'received {what} pushes'}")
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.support.pushfakes.browser", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["env", "run", "wait"])
    parser.add_argument("what", nargs="?", help="wait: `registered`, or a number of pushes")
    parser.add_argument("--dir", type=Path, default=Path(".data/push-fake"))
    parser.add_argument("--port", type=int, help="env, run: the push service's port (env: a free one)")
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the counts service")
    parser.add_argument("--user", help="run: the user whose browser this is")
    parser.add_argument("--token", help="run: that user's token (flask --app app token USER)")
    parser.add_argument("--timeout", type=float, default=WAIT_S, help="wait: at most this long")
    args = parser.parse_args()
    if args.command == "env":
        pki = pki_in(args.dir)
        port = args.port or free_port()
        (args.dir / "port").write_text(str(port))
        print(f"export COUNTS_WEBPUSH_ALLOWED_HOSTS=127.0.0.1:{port}")
        print(f"export COUNTS_PUSH_CA_FILE={Path(pki.ca_file).resolve()}")
    elif args.command == "wait":
        if args.what != "registered" and not (args.what or "").isdigit():
            parser.error("wait: `registered` or a number of pushes")
        wait(args.dir, args.what, args.timeout)
    else:
        run(args)


if __name__ == "__main__":
    main()
