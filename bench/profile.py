"""py-spy profiles of the service's workers, summarized into where their CPU time goes."""

import re
import subprocess
from collections import Counter
from pathlib import Path

from bench.services import BIN

# Each sample is charged to the innermost frame that belongs to one of these parts (a frame's file
# path contains one of the keys), so the shares add up to 100 % and say which code burns the CPU.
PARTS = {
    "gunicorn (HTTP parsing, writing, worker loop)": ("gunicorn/",),
    "counts fast path (the 304 middleware)": ("counts/http/middleware/fastpath.py",),
    "counts identity (who calls: token check, cached)": ("counts/identity/", "counts/http/auth.py"),
    "PyJWT (token decode: a token-cache miss)": ("jwt/",),
    "counts metrics and load gauge": ("counts/http/middleware/observe.py", "counts/observability/",
                                      "prometheus_client/"),
    "counts rate limit": ("counts/markers/ratelimit.py",),
    "redis-py (client)": ("redis/",),
    "werkzeug (incl. parse_etags)": ("werkzeug/",),
    "flask (200 path)": ("flask/",),
    "psycopg2 + counts pool (200 path)": ("counts/postgres/", "psycopg2/"),
    "uuid (parsing and formatting)": ("uuid.py",),
    "json": ("json/",),
    "marshmallow (request bodies)": ("marshmallow/",),
    "counts markers": ("counts/markers/",),
    "secrets (new marker tokens)": ("secrets.py",),
}


class PySpy:
    """`py-spy record` of a process and its subprocesses (gunicorn's workers), non-blocking.

    Only the thread holding the GIL is sampled (--gil): idle gthread threads waiting on a queue
    or in epoll would otherwise count as busy. So the shares are of Python's CPU time; kernel
    time in send/recv (GIL released) is not in them.
    """

    def __init__(self, pid: int, seconds: float, output: Path, rate: int = 100):
        self.output = output
        output.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [str(BIN / "py-spy"), "record", "--pid", str(pid), "--subprocesses", "--nonblocking", "--gil",
             "--duration", str(max(1, int(seconds))), "--rate", str(rate), "--format", "raw",
             "--output", str(output)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def finish(self) -> dict:
        """Wait for the recording and summarize it (None-ish dict if py-spy could not attach)."""
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if not self.output.exists():
            return {"samples": 0, "error": f"py-spy exited {self.proc.returncode} without a profile"}
        return summarize(self.output)


def frames_of(line: str) -> tuple[list[str], int]:
    """A raw (collapsed) py-spy line: its frames root first, without process/thread frames, and count.

    A line cut short (no count at its end) is no sample: one such line once aborted a whole run.
    """
    stack, _, count = line.rpartition(" ")
    if not count.isdigit():
        return [], 0
    frames = [f for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
    return frames, int(count)


def function_of(frame: str) -> str:
    """A frame without its line number: 'function (file)'."""
    return re.sub(r":\d+\)$", ")", frame)


def part_of(frames: list[str]) -> str:
    """The part of PARTS that the innermost frame belonging to any part belongs to, or 'other'."""
    for frame in reversed(frames):
        for name, keys in PARTS.items():
            if any(key in frame for key in keys):
                return name
    return "other (stdlib, app glue)"


def summarize(path: Path, top: int = 12) -> dict:
    """Self time of the hottest functions and each part's share of all samples, in %."""
    own: Counter = Counter()
    parts: Counter = Counter()
    inclusive: Counter = Counter()  # the service's own functions, callees included
    total = 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        frames, count = frames_of(line)
        if not frames:
            continue
        total += count
        own[function_of(frames[-1])] += count
        parts[part_of(frames)] += count
        for frame in {function_of(f) for f in frames if "counts/" in f or "bench/" in f}:
            inclusive[frame] += count
    if not total:
        return {"samples": 0, "error": "no samples"}
    return {"samples": total, "file": str(path),
            "self": [(frame, 100 * n / total) for frame, n in own.most_common(top)],
            "parts": {name: 100 * n / total for name, n in parts.most_common()},
            "inclusive": [(frame, 100 * n / total) for frame, n in inclusive.most_common(top)]}
