"""A certificate authority of the tests' own: the service trusts it through COUNTS_PUSH_CA_FILE."""

from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class TestPKI:
    """The CA bundle to trust, and the fakes' server certificate and key (for 127.0.0.1, localhost)."""

    ca_file: str
    cert_file: str
    key_file: str


def make_pki(directory: Path) -> TestPKI:
    """Write a new CA and server certificate under `directory`."""
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    paths = {name: directory / f"{name}.pem" for name in ("ca", "cert", "key")}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    server.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    server.private_key_pem.write_to_path(str(paths["key"]))
    return TestPKI(str(paths["ca"]), str(paths["cert"]), str(paths["key"]))
