"""The outermost WSGI layer: what every request costs this worker, whoever answers it."""

from collections.abc import Callable, Iterable


class Observe:
    """WSGI middleware recording each request in the worker's load gauge."""

    def __init__(self, app: Callable, resources):
        self.app = app
        self.load = resources.load

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        self.load.started()
        try:
            return self.app(environ, start_response)
        finally:
            self.load.finished()
