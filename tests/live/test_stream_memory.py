"""What a started stream keeps for the hours it is open: not its request."""

import gc
import weakref

from flask import request

from counts.http.streams import KEPT_AFTER_START, release_request
from tests.support.api import new_user


def test_a_started_sse_stream_lets_go_of_its_request(app_factory, tokens):
    """gunicorn keeps the WSGI environ as long as the connection: once the stream runs, the
    environ holds only what is read when it ends, and no Flask request outlives its start."""
    app = app_factory()
    seen: list[tuple[weakref.ref, dict]] = []

    @app.before_request
    def note() -> None:
        seen.append((weakref.ref(request._get_current_object()), request.environ))

    user = new_user()
    response = app.test_client().get(f"/v1/users/{user}/unread-counts/stream",
                                     headers=tokens.user(user), buffered=False)
    try:
        assert response.status_code == 200
        chunks = iter(response.response)
        assert b"event: counts" in next(chunks)
        ref, environ = seen[0]
        gc.collect()
        assert ref() is None
        assert set(environ) <= set(KEPT_AFTER_START)
        assert environ["REQUEST_METHOD"] == "GET"
    finally:
        response.close()


def test_release_request_keeps_only_what_is_read_later():
    environ = {"REQUEST_METHOD": "GET", "gunicorn.socket": object(), "HTTP_AUTHORIZATION": "x",
               "counts.route": "/r", "werkzeug.request": object()}
    release_request(environ, "counts.route")
    assert set(environ) == {"REQUEST_METHOD", "gunicorn.socket", "counts.route"}
