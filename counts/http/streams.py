"""Opening a live stream (SSE or WebSocket) for a request: who may, then its place on the feed.

Flask-free, so that a WebSocket can be served outside Flask's request (counts.live.ws). Every
refusal (400, 401, 403, 429, 503) raises a Problem before the stream starts.
"""

from typing import Any

from counts.http.auth import admit, authorize, identify, parse_path_uuid, query_value
from counts.live.stream import Subscription, Update, open_subscription

# What is read from any stream's environ after it started: the socket gunicorn's post_request
# hook hands to counts.lifecycle, and the method the access log names.
KEPT_AFTER_START = ("REQUEST_METHOD", "gunicorn.socket")


def open_stream(environ: dict, res: Any, user_id: str,
                since: str | None) -> tuple[Subscription, Update | None]:
    """The stream of `user_id`'s counts this request may open, with its first counts (None
    when `since` is current). A `?ticket=` is the credential when present (browsers); a
    `?device_id=` (the id its push registration was given) makes the stream that device's
    presence: the dispatcher then skips alerts to that device alone (COUNTS_PUSH_PRESENCE)."""
    principal = identify(environ, res, ticket_for=user_id)
    admit(environ, res, principal)  # opening a stream is a request; its events are not
    uid = parse_path_uuid(user_id, "user_id")
    authorize(principal, uid)
    device = query_value(environ, "device_id")
    device_id = None if device is None else parse_path_uuid(device, "device_id")
    return open_subscription(res, uid, principal, since, device_id)


def release_request(environ: dict, *also: str) -> None:
    """Let go of a started stream's request: the WSGI environ's headers and variables (~40,
    ~1.5 KiB), which gunicorn's frames keep as long as the connection. Only what is read once
    the stream ends stays (KEPT_AFTER_START, and `also`)."""
    kept = {key: environ[key] for key in (*KEPT_AFTER_START, *also) if key in environ}
    environ.clear()
    environ.update(kept)
