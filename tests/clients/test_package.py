"""The Python client is a package of its own: its wheel holds counts_client and nothing of the
service, and needs only requests."""

import shutil
import subprocess
import sys
import zipfile

from tests.support import ROOT


def test_the_client_wheel_holds_only_the_client_and_needs_only_requests(tmp_path):
    # From a copy: setuptools leaves build/ and *.egg-info beside the sources it builds.
    source = shutil.copytree(ROOT / "clients" / "python", tmp_path / "source",
                             ignore=shutil.ignore_patterns("build", "*.egg-info"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                            "--no-build-isolation", "-w", str(tmp_path), str(source)],
                           capture_output=True, text=True, timeout=120, check=False)
    assert built.returncode == 0, built.stderr
    [wheel] = tmp_path.glob("counts_client-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    dist_info = wheel.name.rsplit("-", 3)[0] + ".dist-info"  # counts_client-1.0.0.dist-info
    assert {name.split("/")[0] for name in names} == {"counts_client", dist_info}
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert requires == ["Requires-Dist: requests>=2.31"]
