"""A local identity provider, to try provider-signed (ES256) tokens without a Supabase project.

    .venv/bin/python -m dev.oidc serve &          # an ES256 key, its JWKS on a free loopback port
    eval "$(.venv/bin/python -m dev.oidc env)"    # COUNTS_JWKS_URL and COUNTS_JWT_ISSUER for it
    .venv/bin/python -m dev.oidc token "$BOB"     # a token shaped as Supabase's access tokens

`serve` makes the key under --dir on first use (so tokens minted earlier stay valid across
restarts) and writes its address there; `env` and `token` read it, `env` waiting until the
provider answers. Development only: it signs whatever it is asked to.
"""

import argparse
import http.server
import json
import signal
import sys
import threading
import time
import uuid
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

HOST = "127.0.0.1"
JWKS_PATH = "/.well-known/jwks.json"
AUDIENCE = "authenticated"  # Supabase's, and counts' default
WAIT_S = 10.0


def _key(directory: Path) -> ec.EllipticCurvePrivateKey:
    """The provider's P-256 key, made on first use."""
    path = directory / "key.pem"
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        path.write_bytes(pem)
        path.chmod(0o600)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def _key_id(key: ec.EllipticCurvePrivateKey) -> str:
    """A stable kid: derived from the public key, as providers do (RFC 7638's spirit)."""
    raw = key.public_key().public_bytes(serialization.Encoding.X962,
                                        serialization.PublicFormat.CompressedPoint)
    return uuid.uuid5(uuid.NAMESPACE_OID, raw.hex()).hex[:16]


def jwks(key: ec.EllipticCurvePrivateKey) -> bytes:
    """The JSON Web Key Set publishing the key's public half."""
    public = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    public.update({"kid": _key_id(key), "alg": "ES256", "use": "sig"})
    return json.dumps({"keys": [public]}).encode()


def serve(directory: Path, port: int) -> None:
    """Serve the JWKS until interrupted; record the issuer URL for `env` and `token`."""
    body = jwks(_key(directory))

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = self.path == JWKS_PATH
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body) if found else 0))
            self.end_headers()
            if found:
                self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass  # a line per key fetch would drown the terminal it shares with make run

    server = http.server.ThreadingHTTPServer((HOST, port), Handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` ends it as Ctrl-C does
    issuer = f"http://{HOST}:{server.server_address[1]}"
    (directory / "issuer").write_text(issuer)
    print(f"identity provider on {issuer} (keys at {issuer}{JWKS_PATH})", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        (directory / "issuer").unlink(missing_ok=True)


def issuer(directory: Path, wait: float = 0.0) -> str:
    """The running provider's issuer URL, waiting up to `wait` seconds for `serve` to start."""
    path, deadline = directory / "issuer", time.monotonic() + wait
    while not path.exists():
        if time.monotonic() >= deadline:
            sys.exit(f"No identity provider is running for {directory}: start "
                     "`python -m dev.oidc serve` first.")
        threading.Event().wait(0.05)
    return path.read_text().strip()


def token(directory: Path, subject: str, ttl: int, audience: str) -> str:
    """An ES256 access token for `subject`, shaped as Supabase Auth issues them."""
    key, now = _key(directory), int(time.time())
    claims = {"sub": subject, "role": "authenticated", "aud": audience, "iss": issuer(directory),
              "iat": now, "exp": now + ttl}
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": _key_id(key)})


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m dev.oidc", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["serve", "env", "token"])
    parser.add_argument("subject", nargs="?", help="token: the user's id (a UUID)")
    parser.add_argument("--dir", type=Path, default=Path(".data/oidc"))
    parser.add_argument("--port", type=int, default=0, help="serve: 0 picks a free port")
    parser.add_argument("--ttl", type=int, default=3600, help="token: seconds until it expires")
    parser.add_argument("--audience", default=AUDIENCE, help="token: its aud")
    args = parser.parse_args()
    if args.command == "serve":
        _key(args.dir)
        serve(args.dir, args.port)
    elif args.command == "env":
        url = issuer(args.dir, wait=WAIT_S)
        print(f"export COUNTS_JWKS_URL={url}{JWKS_PATH}")
        print(f"export COUNTS_JWT_ISSUER={url}")
    else:
        if not args.subject:
            parser.error("token needs the user's id")
        print(token(args.dir, args.subject, args.ttl, args.audience))


if __name__ == "__main__":
    main()
