"""The service's app with tracemalloc on and a `/__memory` route, for bench.live_memory only
(never shipped: gunicorn loads it by name when that tool asks)."""

import collections
import gc
import json
import os
import tracemalloc
from collections.abc import Callable, Iterable
from typing import Any

import psutil

from wsgi import app as service

FRAMES = int(os.environ.get("LIVE_MEMORY_FRAMES", "1"))
if FRAMES:
    tracemalloc.start(FRAMES)
_marks: dict[str, tuple[Any, collections.Counter]] = {}


def mark(tag: str) -> dict[str, Any]:
    """RSS, traced bytes and object counts now, kept under `tag`; against mark "a" if this
    is "b": the allocation sites and object types that grew, largest first."""
    gc.collect()
    objects = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
    snapshot = tracemalloc.take_snapshot() if tracemalloc.is_tracing() else None
    _marks[tag] = (snapshot, objects)
    answer: dict[str, Any] = {"rss": psutil.Process().memory_info().rss,
                              "traced": tracemalloc.get_traced_memory()[0] if snapshot else 0}
    if tag == "b" and "a" in _marks:
        before, counted = _marks["a"]
        grown = collections.Counter(objects)
        grown.subtract(counted)
        answer["objects"] = grown.most_common(30)
        if snapshot is not None and before is not None:
            answer["sites"] = [(stat.size_diff, stat.count_diff, str(stat.traceback))
                               for stat in snapshot.compare_to(before, "lineno")[:40]]
    return answer


def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
    if environ.get("PATH_INFO") == "/__memory":
        body = json.dumps(mark(environ.get("QUERY_STRING", "a"))).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    return service(environ, start_response)
