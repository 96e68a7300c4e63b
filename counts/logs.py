"""JSON log lines, one object per line, for the app and for gunicorn alike."""

import json
import logging
import os
import re
import time

from gunicorn.glogging import Logger

# What a JWT looks like (base64url header that starts '{"', payload, signature). Our code never
# logs a header, but a library may quote a request line (gunicorn does, for a malformed header).
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")

# Attributes every LogRecord has; anything else on a record came from `extra=` and is logged.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def json_line(created: float, level: str, logger: str, message: str, fields: dict) -> str:
    """One log line: time, level, logger, message, pid, then `fields`; JWTs redacted."""
    entry = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
              + f".{int(created * 1000) % 1000:03d}Z",
        "level": level, "logger": logger, "msg": message, "pid": os.getpid(), **fields,
    }
    return _JWT.sub("[redacted-jwt]", json.dumps(entry, default=str))


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object (see json_line), with its extras and exception."""

    def format(self, record: logging.LogRecord) -> str:
        fields = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        return json_line(record.created, record.levelname.lower(), record.name,
                         record.getMessage(), fields)


class AccessLog:
    """The per-request line, written straight to stderr in the same JSON shape.

    It runs for every request, 304s included: going through logging (a LogRecord, handler locks,
    the generic formatter) cost as much as a tenth of a 304. One os.write per line keeps lines
    from different threads whole.
    """

    def __init__(self) -> None:
        self.enabled = logging.getLevelName(log_level()) <= logging.INFO

    def write(self, fields: dict) -> None:
        """Log one request's fields, if the level lets info lines through."""
        if self.enabled:
            line = json_line(time.time(), "info", "counts.access", "request", fields)
            os.write(2, line.encode() + b"\n")


def log_level() -> str:
    """The level from COUNTS_LOG_LEVEL (default info)."""
    return os.environ.get("COUNTS_LOG_LEVEL", "info").upper()


def configure() -> None:
    """Send every logger's records to stderr as JSON, at COUNTS_LOG_LEVEL."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(log_level())


class GunicornLogger(Logger):
    """gunicorn's logger, writing its lines in the same JSON shape, and no access log.

    counts.observe already logs every request. gunicorn 27 builds its access-log fields for every
    request whenever any log config is set (and, as its `access_log_enabled` check tests a bound
    method, even when none is): about 5 % of a 304's CPU, for a line nobody reads.
    """

    def setup(self, cfg) -> None:
        """gunicorn's own setup, then our formatter on its handlers."""
        super().setup(cfg)
        for handler in self.error_log.handlers:
            handler.setFormatter(JsonFormatter())

    def access(self, resp, req, environ, request_time) -> None:
        """Nothing: counts.observe logged this request."""
