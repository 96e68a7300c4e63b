"""JSON log lines, one object per line, for the app and for gunicorn alike."""

import atexit
import functools
import json
import logging
import os
import re
import threading
import time
from typing import Any

from gunicorn.glogging import Logger

# What a JWT looks like (base64url header that starts '{"', payload, signature). Our code never
# logs a header, but a library may quote a request line (gunicorn does, for a malformed header).
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")

# Attributes every LogRecord has; anything else on a record came from `extra=` and is logged.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

# Built once: json.dumps(..., default=str) builds a new encoder for every line.
_ENCODE = json.JSONEncoder(default=str).encode
_string = json.encoder.encode_basestring_ascii  # a str as a JSON string, as _ENCODE writes it


@functools.lru_cache(maxsize=4)
def _second_text(second: int) -> str:
    # Every request writes a line: strftime once a second is enough.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def timestamp(created: float) -> str:
    """ISO 8601 UTC with milliseconds, e.g. 2026-11-30T04:09:39.123Z."""
    return f"{_second_text(int(created))}.{int(created * 1000) % 1000:03d}Z"


def json_line(created: float, level: str, logger: str, message: str, fields: dict) -> str:
    """One log line: time, level, logger, message, pid, then `fields`; JWTs redacted."""
    entry = {"ts": timestamp(created), "level": level, "logger": logger, "msg": message,
             "pid": os.getpid(), **fields}
    return _JWT.sub("[redacted-jwt]", _ENCODE(entry))


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object (see json_line), with its extras and exception."""

    def format(self, record: logging.LogRecord) -> str:
        fields = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        return json_line(record.created, record.levelname.lower(), record.name,
                         record.getMessage(), fields)


class AccessLog:
    """The per-request line, in the same JSON shape, written to stderr in batches.

    It runs for every request, 304s included. Going through logging (a LogRecord, handler locks,
    the generic formatter) cost as much as a tenth of a 304, and even one bare os.write per line
    cost a gthread worker about 14 % of its 304s (0.70x against 0.81x the bare floor with the log
    off, in one run): every write lets go of the GIL mid-request, and the thread then queues to
    get it back. So, like nginx's `access_log ... buffer= flush=`, lines are collected and
    written whole, one os.write per `flush_bytes`, and at most `flush_interval` seconds late (a
    flusher thread). Worker exit (Resources.close) and interpreter exit flush; a SIGKILLed
    worker loses at most its last `flush_interval` of lines.
    """

    def __init__(self, level: str, flush_interval: float, flush_bytes: int = 64 * 1024,
                 fd: int = 2):
        self.enabled = logging.getLevelName(level.upper()) <= logging.INFO
        self.flush_bytes = flush_bytes
        self.flush_interval = flush_interval
        self.fd = fd
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._lock = threading.Lock()
        self._flusher_pid = 0  # threads do not survive fork: each process starts its own
        self._closed = threading.Event()
        atexit.register(self.flush)

    def write(self, method: str, route: str, status: int, seconds: float, request_id: str) -> None:
        """Log one answered request, if the level lets info lines through."""
        if not self.enabled:
            return
        # The json_line shape, spelled out: a dict through the JSON encoder costs this line twice.
        # Strings are escaped as the encoder would; numbers are ours.
        line = (f'{{"ts": "{timestamp(time.time())}", "level": "info", "logger": "counts.access", '
                f'"msg": "request", "pid": {os.getpid()}, "method": {_string(method)}, '
                f'"route": {_string(route)}, "status": {status}, '
                f'"duration_ms": {round(seconds * 1000, 3)}, "request_id": {_string(request_id)}}}\n')
        if "eyJ" in line:  # the start of any JWT: see _JWT
            line = _JWT.sub("[redacted-jwt]", line)
        data = line.encode()
        with self._lock:
            self._pending.append(data)
            self._pending_bytes += len(data)
            if self._flusher_pid != os.getpid():
                self._start_flusher()
            if self._pending_bytes >= self.flush_bytes:
                self._write_pending()

    def flush(self) -> None:
        """Write every pending line now."""
        with self._lock:
            self._write_pending()

    def close(self) -> None:
        """Flush, and stop the flusher thread (and the exit-time flush: nothing is left)."""
        self._closed.set()
        atexit.unregister(self.flush)
        self.flush()

    def _write_pending(self) -> None:
        # Under the lock, so batches from different threads never overtake one another.
        data = b"".join(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        try:
            while data:
                data = data[os.write(self.fd, data):]
        except OSError:
            pass  # stderr is gone (a closed pipe): there is nowhere left to say so

    def _start_flusher(self) -> None:
        self._flusher_pid = os.getpid()
        threading.Thread(target=self._flush_periodically, name="counts-access-log",
                         daemon=True).start()

    def _flush_periodically(self) -> None:
        while not self._closed.wait(self.flush_interval):
            self.flush()


def configure(level: str) -> None:
    """Send every logger's records to stderr as JSON, at `level` (COUNTS_LOG_LEVEL)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class GunicornLogger(Logger):
    """gunicorn's logger, writing its lines in the same JSON shape, and no access log.

    counts.http.middleware.observe already logs every request. gunicorn 27 builds its access-log
    fields for every request whenever any log config is set (and, as its `access_log_enabled`
    check tests a bound method, even when none is): about 5 % of a 304's CPU, for a line nobody
    reads.
    """

    def setup(self, cfg: Any) -> None:
        """gunicorn's own setup, then our formatter on its handlers."""
        super().setup(cfg)
        for handler in self.error_log.handlers:
            handler.setFormatter(JsonFormatter())

    def access(self, resp: Any, req: Any, environ: dict, request_time: Any) -> None:
        """Nothing: counts.http.middleware.observe logged this request."""
