"""The Web Push application server key (VAPID, RFC 8292), and a generator for development keys.

`python -m counts.push.vapid` prints a new private key (base64url), which is what `make run` keeps
in .data/ when COUNTS_VAPID_PRIVATE_KEY is not set.
"""

import base64

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid


def b64url(data: bytes) -> str:
    """Unpadded base64url, the encoding of every key and token in Web Push."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    """Decode base64url with or without padding; ValueError on anything else."""
    if not text or any(c not in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_="
                       for c in text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_private_key(text: str) -> Vapid:
    """A VAPID key from PEM, or base64url (the raw 32-byte scalar or DER): RuntimeError if bad."""
    try:
        if "-----BEGIN" in text:
            key = serialization.load_pem_private_key(text.encode(), password=None)
        else:
            raw = b64url_decode(text.strip())
            key = (ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1()) if len(raw) == 32
                   else serialization.load_der_private_key(raw, password=None))
    except (ValueError, TypeError) as error:
        raise RuntimeError(f"COUNTS_VAPID_PRIVATE_KEY is not a usable key: {error}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise RuntimeError("COUNTS_VAPID_PRIVATE_KEY must be a P-256 (prime256v1) EC key")
    return Vapid(key)


def public_key(vapid: Vapid) -> str:
    """The applicationServerKey browsers pass to pushManager.subscribe (uncompressed point, base64url)."""
    return b64url(vapid.public_key.public_bytes(serialization.Encoding.X962,
                                                serialization.PublicFormat.UncompressedPoint))


def generate() -> str:
    """A new private key as base64url (its raw 32-byte scalar)."""
    key = ec.generate_private_key(ec.SECP256R1())
    return b64url(key.private_numbers().private_value.to_bytes(32, "big"))


if __name__ == "__main__":
    print(generate())
