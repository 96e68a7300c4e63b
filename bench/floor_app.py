"""The floor for Python on this machine: a bare WSGI app doing one Redis GET and answering 304.

Run under the same gunicorn settings as the service (`gunicorn -c gunicorn.conf.py
bench.floor_app:app`), so the ratio of the two compares only the work done per request.
"""

import os

import redis

_client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
KEY = os.environ.get("FLOOR_KEY", "counts:floor:marker")


def app(environ, start_response):
    """Read one key and answer 304 with an ETag, as the service's hot path does."""
    marker = _client.get(KEY) or b"none"
    start_response("304 Not Modified", [("ETag", f'"{marker.decode()}"')])
    return [b""]
