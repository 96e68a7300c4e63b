"""JSON log lines, one object per line, for the app and for gunicorn alike."""

import json
import logging
import os
import re
import time

# What a JWT looks like (base64url header that starts '{"', payload, signature). Our code never
# logs a header, but a library may quote a request line (gunicorn does, for a malformed header).
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")

# Attributes every LogRecord has; anything else on a record came from `extra=` and is logged.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: time, level, logger, message, pid, and any extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                  + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,
        }
        entry.update((k, v) for k, v in vars(record).items() if k not in _STANDARD)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return _JWT.sub("[redacted-jwt]", json.dumps(entry, default=str))


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


# gunicorn's own loggers (gunicorn.error, gunicorn.access) in the same shape; see gunicorn.conf.py.
GUNICORN_LOGCONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "counts.logs.JsonFormatter"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json",
                            "stream": "ext://sys.stderr"}},
    "root": {"handlers": ["stderr"], "level": log_level()},
    "loggers": {
        "gunicorn.error": {"handlers": ["stderr"], "level": log_level(), "propagate": False},
        # counts.observe logs each request (304s answered before Flask included); gunicorn's
        # access line would only repeat it, with the raw path.
        "gunicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
    },
}
