"""A local identity provider: real key pairs, a JWKS endpoint, and tokens shaped as Supabase's.

Used by the tests and by the hot-path benchmark (an ES256 variant needs a JWKS to fetch from).
"""

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import get_default_algorithms

PROJECT_REF = "qwertyuiopasdfghjklz"  # a Supabase project ref is 20 lowercase letters
ISSUER = f"https://{PROJECT_REF}.supabase.co/auth/v1"
# A legacy Supabase project's JWT secret (HS256): the Supabase CLI's local default.
LEGACY_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"


class SigningKey:
    """A provider's key pair: EC P-256 (ES256), RSA 2048 (RS256) or Ed25519 (EdDSA)."""

    def __init__(self, kind: str = "EC", kid: str | None = None):
        self.kid = kid or str(uuid.uuid4())  # Supabase's kids are UUIDs
        if kind == "EC":
            self.alg, self.private = "ES256", ec.generate_private_key(ec.SECP256R1())
        elif kind == "RSA":
            self.alg, self.private = "RS256", rsa.generate_private_key(65537, 2048)
        elif kind == "Ed25519":
            self.alg, self.private = "EdDSA", ed25519.Ed25519PrivateKey.generate()
        else:
            raise ValueError(kind)

    def jwk(self) -> dict:
        """The public key as Supabase's JWKS lists it."""
        public = json.loads(get_default_algorithms()[self.alg].to_jwk(self.private.public_key()))
        return {**public, "kid": self.kid, "alg": self.alg, "use": "sig", "key_ops": ["verify"],
                "ext": True}

    def public_pem(self) -> bytes:
        """The public key as PEM (what an algorithm-confusion attacker uses as an HMAC secret)."""
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign(self, claims: dict, **header) -> str:
        """A token signed with this key, its kid in the header (override with kid=...)."""
        return jwt.encode(claims, self.private, algorithm=self.alg,
                          headers={"kid": self.kid, "typ": "JWT", **header})


def supabase_claims(user_id, ttl: int = 3600, **changes) -> dict:
    """Every claim Supabase Auth puts in a signed-in user's access token; None removes one."""
    now = int(time.time())
    claims = {
        "iss": ISSUER, "sub": str(user_id), "aud": "authenticated", "exp": now + ttl, "iat": now,
        "email": "bob@example.com", "phone": "",
        "app_metadata": {"provider": "email", "providers": ["email"]},
        "user_metadata": {"email": "bob@example.com", "email_verified": True,
                          "phone_verified": False, "sub": str(user_id)},
        "role": "authenticated", "aal": "aal1",
        "amr": [{"method": "password", "timestamp": now - 60}],
        "session_id": str(uuid.uuid4()), "is_anonymous": False,
        **changes,
    }
    return {k: v for k, v in claims.items() if v is not None}


def legacy_service_role_key(secret: str = LEGACY_SECRET) -> str:
    """A legacy project's service_role API key: HS256, `iss: supabase`, no `aud`, years to live."""
    now = int(time.time())
    return jwt.encode({"iss": "supabase", "ref": PROJECT_REF, "role": "service_role", "iat": now,
                       "exp": now + 10 * 365 * 86400}, secret, algorithm="HS256")


class JwksServer:
    """A JWKS endpoint on a free local port that counts its fetches and fails when told to.

    mode: "up"; "error" (HTTP 500); "garbage" (200, not JSON); "trickle" (a byte at a time
    until the mode changes, then the keys). hold() makes fetches wait (in flight, counted) until
    release(); stop() closes the port (connection refused).
    """

    def __init__(self, *keys: SigningKey):
        self.keys = list(keys)
        self.mode = "up"
        self.fetches = 0
        self.in_flight = 0
        self._lock = threading.Lock()
        self._gate = threading.Event()
        self._gate.set()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.provider = self
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/auth/v1/.well-known/jwks.json"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)
        self._running = False

    def start(self) -> "JwksServer":
        self._thread.start()
        self._running = True
        return self

    def publish(self, *keys: SigningKey) -> None:
        """Serve these keys from the next fetch on (a rotation, or a revocation)."""
        self.keys = list(keys)

    def hold(self) -> None:
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def stop(self) -> None:
        """Close the port; fetches are refused from now on. Safe to call twice."""
        self.release()
        if self._running:
            self._server.shutdown()
            self._running = False
        self._server.server_close()

    def serve(self, handler: BaseHTTPRequestHandler) -> None:
        """Answer one fetch as the current mode says."""
        with self._lock:
            self.fetches += 1
            self.in_flight += 1
        try:
            self._gate.wait(timeout=30)
            if self.mode == "error":
                body, status = b"upstream unavailable", 500
            elif self.mode == "garbage":
                body, status = b"<html>maintenance</html>", 200
            elif self.mode == "trickle":
                self._trickle(handler)
                return
            else:
                body, status = json.dumps({"keys": [k.jwk() for k in self.keys]}).encode(), 200
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
        finally:
            with self._lock:
                self.in_flight -= 1


    def _trickle(self, handler: BaseHTTPRequestHandler) -> None:
        """Whitespace (valid before JSON) every 20 ms while the mode lasts, then the keys."""
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.end_headers()  # no Content-Length: the body ends when the connection closes
        while self.mode == "trickle" and self._running:
            handler.wfile.write(b" ")
            handler.wfile.flush()
            time.sleep(0.02)
        handler.wfile.write(json.dumps({"keys": [k.jwk() for k in self.keys]}).encode())


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.provider.serve(self)

    def log_message(self, format, *args):  # noqa: A002 - http.server's signature
        pass  # quiet: the tests count fetches instead
