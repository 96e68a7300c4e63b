"""Try Web Push on one machine: a local push service, and a "browser" subscribed to it that prints
each push it receives, decrypted. For people trying `make run`; test code, never the service's.

    eval "$(.venv/bin/python -m tests.support.pushfakes.browser env)"   # before `make run`, same shell
    .venv/bin/python -m tests.support.pushfakes.browser run --user "$BOB" --token "$BOB_TOKEN"

`env` makes a CA and a certificate for 127.0.0.1 under --dir and prints the two settings that
let the service trust and reach this push service (and no other); `run` serves it, subscribes
with the service's /v1/push/webpush-key, registers the subscription as the user's device, and
prints every push as a JSON line until Ctrl-C.
"""

import argparse
import json
import signal
import threading
from pathlib import Path

import requests

from tests.support.pushfakes.server import FakeServer
from tests.support.pushfakes.tls import TestPKI, make_pki
from tests.support.pushfakes.webpush import PushService, Subscriber


def pki_in(directory: Path) -> TestPKI:
    """The CA and certificate under `directory`, made on first use."""
    if not (directory / "ca.pem").exists():
        directory.mkdir(parents=True, exist_ok=True)
        return make_pki(directory)
    return TestPKI(*(str(directory / f"{name}.pem") for name in ("ca", "cert", "key")))


def run(args: argparse.Namespace) -> None:
    """Serve, subscribe, register, print pushes until interrupted."""
    service = PushService()
    server = FakeServer(service, pki_in(args.dir), port=args.port).start()
    service.origin = server.url
    key = requests.get(f"{args.url}/v1/push/webpush-key", timeout=10).json()["public_key"]
    browser = Subscriber(service, server.url, key)
    done = threading.Event()

    def show(message) -> None:
        print(json.dumps({"urgency": message.headers.get("urgency"), "ttl": message.headers.get("ttl"),
                          "push": json.loads(browser.decrypt(message.body))}), flush=True)

    service.on_receive = show
    registered = requests.post(f"{args.url}/v1/users/{args.user}/devices", timeout=10,
                               headers={"Authorization": f"Bearer {args.token}"},
                               json={"platform": "webpush", "subscription": browser.subscription()})
    print(f"registered: {registered.status_code} {registered.text.strip()}", flush=True)
    signal.signal(signal.SIGINT, lambda *_: done.set())
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    done.wait()
    server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.support.pushfakes.browser", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["env", "run"])
    parser.add_argument("--dir", type=Path, default=Path(".data/push-fake"))
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the counts service")
    parser.add_argument("--user", help="run: the user whose browser this is")
    parser.add_argument("--token", help="run: that user's token (flask --app app token USER)")
    args = parser.parse_args()
    if args.command == "env":
        pki = pki_in(args.dir)
        print(f"export COUNTS_WEBPUSH_ALLOWED_HOSTS=127.0.0.1:{args.port}")
        print(f"export COUNTS_PUSH_CA_FILE={Path(pki.ca_file).resolve()}")
    else:
        run(args)


if __name__ == "__main__":
    main()
