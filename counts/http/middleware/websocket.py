"""WebSocket upgrades of the counts' WebSocket URL, served outside Flask.

A session holds its greenlet for hours, and inside Flask's request it also held the request
context (about 10 KiB more per socket). The handshake is checked and the stream opened here
(who may, then its place on the feed); the socket is then handed to counts.live.ws.Session.
Anything refused goes on to Flask, which answers with the problem as every error is answered.
"""

import re
from collections.abc import Callable, Iterable
from typing import Any

from wsproto import ConnectionType, WSConnection
from wsproto.events import Request
from wsproto.utilities import ProtocolError

from counts.errors import Problem
from counts.http.auth import query_value
from counts.http.middleware.observe import ROUTE_KEY
from counts.http.streams import open_stream, release_request
from counts.live.ws import Session

WS_PATH = re.compile(r"/v1/users/([^/]+)/unread-counts/ws")
WS_ROUTE = "/v1/users/<user_id>/unread-counts/ws"
# Where a refused upgrade leaves its Problem for the Flask view to render as problem+json.
PROBLEM_KEY = "counts.websocket_problem"


class WebSockets:
    """WSGI middleware serving the WebSocket URL; everything else (and a refusal) goes on."""

    def __init__(self, app: Callable, resources: Any):
        self.app = app
        self.resources = resources

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("HTTP_UPGRADE", "").lower() == "websocket" and supported(environ):
            found = WS_PATH.fullmatch(environ.get("PATH_INFO", ""))
            if found is not None and environ["REQUEST_METHOD"] == "GET":
                environ[ROUTE_KEY] = WS_ROUTE
                self.serve(environ, start_response, found.group(1))  # or falls through
        return self.app(environ, start_response)

    def serve(self, environ: dict, start_response: Callable, user_id: str) -> None:
        """Open and serve one WebSocket (raising StopIteration, which tells gunicorn to close
        the connection with nothing more written); return if refused, its problem noted."""
        res = self.resources
        try:
            try:
                connection = handshake(environ)
            except ProtocolError as error:
                raise Problem(f"Not a valid WebSocket upgrade: {error}.") from None
            sub, first = open_stream(environ, res, user_id, query_value(environ, "etag"))
        except Problem as problem:
            environ[PROBLEM_KEY] = problem
            return
        start_response("101 Switching Protocols", [])  # for the access log; never written
        live = res.settings.live
        session = Session(connection, environ["gunicorn.socket"], sub, live.ws_ping_interval,
                          live.heartbeat, first)
        # This frame lives as long as the socket: let go of the handshake (its h11 parser),
        # the first counts and the request's environ (release_request): ~7 KiB a socket.
        del connection, sub, first
        release_request(environ, ROUTE_KEY)  # observe logs the socket's route when it ends
        with res.load.waiting():
            session.run()
        raise StopIteration


def supported(environ: dict) -> bool:
    """Whether this server can hand the socket over: gunicorn's gevent worker."""
    if "gunicorn.socket" not in environ:
        return False
    from gevent import monkey

    return monkey.is_module_patched("socket")


def handshake(environ: dict) -> WSConnection:
    """Parse the upgrade request; raises wsproto's ProtocolError if it is not a valid one."""
    connection = WSConnection(ConnectionType.SERVER)
    headers = [(key[5:].replace("_", "-").lower(), value) for key, value in environ.items()
               if key.startswith("HTTP_")]
    target = environ.get("RAW_URI") or environ.get("PATH_INFO", "/")
    connection.initiate_upgrade_connection(headers, target)
    if not isinstance(next(connection.events(), None), Request):
        raise ProtocolError("not a WebSocket upgrade request")
    return connection
