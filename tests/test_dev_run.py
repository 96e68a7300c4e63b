"""`make run` (dev/run.py): it refuses to start with one line saying why, before it writes .env or
starts anything; and a run that started stops cleanly on Ctrl-C, leaving nothing behind."""

import os
import signal
import socket
import subprocess
import sys

import requests

from tests.support import ROOT
from tests.support.environment import ADMIN_URL, REDIS_URL
from tests.support.postgres import with_database
from tests.support.services import free_port, wait_until


def make_run(tmp_path, **env: str) -> subprocess.Popen:
    """`python -m dev.run` as `make run` starts it, with its .data and .env in tmp_path."""
    ports = {"COUNTS_BIND": f"127.0.0.1:{free_port()}", "COUNTS_ADMIN_BIND": f"127.0.0.1:{free_port()}",
             "COUNTS_PUSH_METRICS_PORT": str(free_port())}
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("COUNTS_", "DATABASE_", "REDIS_"))}
    (tmp_path / "tmp").mkdir(exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "dev.run", "--data-dir", str(tmp_path / "data"),
         "--env-file", str(tmp_path / ".env")],
        cwd=ROOT, env={**clean, **ports, "REDIS_URL": REDIS_URL, "TMPDIR": str(tmp_path / "tmp"), **env},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_taken_port_is_said_in_one_line_and_nothing_starts(database_url, tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        run = make_run(tmp_path, DATABASE_URL=database_url, COUNTS_BIND=address)
        _, err = run.communicate(timeout=60)
    assert run.returncode == 1
    assert err.strip().splitlines() == [
        f"counts: {address} (COUNTS_BIND) is taken: another `make run`, or another service, "
        "listens there (Address already in use). Stop it, or set COUNTS_BIND."]
    assert not (tmp_path / ".env").exists()


def test_a_database_that_does_not_exist_says_create_it_first(tmp_path):
    missing = with_database(ADMIN_URL, "counts_test_never_created")
    run = make_run(tmp_path, DATABASE_URL=missing)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 1
    assert "Traceback" not in err
    [line] = err.strip().splitlines()
    assert line.startswith("counts: Postgres at DATABASE_URL cannot be used: ")
    assert '"counts_test_never_created" does not exist' in line and line.endswith(
        "Create it first (createdb, or CREATE DATABASE).")
    assert not (tmp_path / ".env").exists()


def test_a_run_serves_writes_env_and_stops_cleanly_on_ctrl_c(database_url, pg, tmp_path):
    bind = f"127.0.0.1:{free_port()}"
    run = make_run(tmp_path, DATABASE_URL=database_url, COUNTS_BIND=bind)
    try:
        wait_until(lambda: requests.get(f"http://{bind}/healthz", timeout=2).ok, timeout=60,
                   what="make run's service")
        env_file = (tmp_path / ".env").read_text()
        assert f"COUNTS_BIND={bind}\n" in env_file and "COUNTS_JWT_SECRET=" in env_file
    finally:
        run.send_signal(signal.SIGINT)  # Ctrl-C: the terminal signals make run, not its children
        _, err = run.communicate(timeout=60)
    assert run.returncode == 0, err
    assert "Traceback" not in err and "SystemExit" not in err
    assert list((tmp_path / "tmp").iterdir()) == []  # the workers' metrics directory is gone
