"""The floor for Python on this machine: a bare WSGI app doing one Redis GET and answering 304.

Run under the same gunicorn settings as the service (`gunicorn -c gunicorn.conf.py
bench.floor_app:app`), so the ratio of the two compares only the work done per request.

Its Redis client is the service's (counts.markers.store.connect, from the same settings): the
same pool, socket timeouts and retry. A stock `redis.Redis.from_url` has no socket timeout, so
under gevent its reads arm no timer, a cost the service must pay (a silent Redis must cost a
request one timeout, not hang it): the floor would count the service's fail-fast against it.
"""

import os

from counts.markers import store
from counts.settings import Settings

_redis = Settings.from_env().redis
_client = store.connect(_redis.topology, _redis.timeout, _redis.pool_size)
KEY = os.environ.get("FLOOR_KEY", "counts:floor:marker")


def app(environ, start_response):
    """Read one key and answer 304 with an ETag, as the service's hot path does."""
    marker = _client.get(KEY) or b"none"
    start_response("304 Not Modified", [("ETag", f'"{marker.decode()}"')])
    return [b""]
