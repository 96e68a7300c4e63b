"""The OpenAPI 3 document of the whole API, built by apispec from the marshmallow schemas.

Request bodies are the very schemas the views validate with (counts.http.schemas); the response
bodies below exist only to be documented, since the views write their JSON by hand.
"""

import json
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import INCLUDE, Schema, fields, validate

from counts.http import schemas
from counts.push import providers
from counts.push.providers import webpush
from counts.representation import LEVELS

OPENAPI_VERSION = "3.0.3"
API_VERSION = "1"
UUID_SCHEMA = {"type": "string", "format": "uuid"}
JSON = "application/json"
PROBLEM = "application/problem+json"


# --- response bodies ---------------------------------------------------------------------------

class ConversationUnread(Schema):
    conversation_id = fields.UUID(required=True)
    unread = fields.Integer(required=True, validate=validate.Range(min=0), metadata={
        "description": "Unread messages, whatever the level (0 only when marked unread)."})
    mentions = fields.Integer(required=True, validate=validate.Range(min=0),
                              metadata={"description": "Unread messages that mention the user."})
    notify = fields.String(required=True, validate=validate.OneOf(LEVELS), metadata={
        "description": "all: counts in total and badge; mentions: only its mentions do; none: "
                       "neither (still listed, so an app can grey it out)."})
    marked_unread = fields.Boolean(required=True)
    parent_id = fields.UUID(required=True, allow_none=True,
                            metadata={"description": "The parent conversation of a thread."})


class ThreadTotals(Schema):
    unread = fields.Integer(required=True, validate=validate.Range(min=0))
    unread_threads = fields.Integer(required=True, validate=validate.Range(min=0))
    mentions = fields.Integer(required=True, validate=validate.Range(min=0))


class Counts(Schema):
    user_id = fields.UUID(required=True)
    total = fields.Integer(required=True, validate=validate.Range(min=0), metadata={
        "description": "Unread in top-level conversations at notify=all."})
    unread_conversations = fields.Integer(required=True, validate=validate.Range(min=0), metadata={
        "description": "Top-level conversations at notify=all with unread or marked unread."})
    mentions = fields.Integer(required=True, validate=validate.Range(min=0), metadata={
        "description": "Unread mentions in every conversation not at notify=none, threads too."})
    badge = fields.Integer(required=True, validate=validate.Range(min=0), metadata={
        "description": "The app icon's number, as every push carries it, by the user's badge "
                       "policy (COUNTS_BADGE_POLICY unless they chose one)."})
    threads = fields.Nested(ThreadTotals, required=True,
                            metadata={"description": "Over threads not at notify=none."})
    conversations = fields.List(fields.Nested(ConversationUnread), required=True, metadata={
        "description": "Conversations with unread > 0 or marked unread, whatever their level."})


class BatchNotModified(Schema):
    user_id = fields.UUID(required=True)
    status = fields.Integer(required=True, validate=validate.OneOf([304]))
    etag = fields.String(required=True)


class BatchFresh(Schema):
    user_id = fields.UUID(required=True)
    status = fields.Integer(required=True, validate=validate.OneOf([200]))
    etag = fields.String(required=True)
    counts = fields.Nested(Counts, required=True)


class BatchUnavailable(Schema):
    user_id = fields.UUID(required=True)
    status = fields.Integer(required=True, validate=validate.OneOf([503]),
                            metadata={"description": "Changed, and Postgres cannot say how."})


class ConversationCreated(Schema):
    conversation_id = fields.UUID(required=True)


class Membership(Schema):
    conversation_id = fields.UUID(required=True)
    user_id = fields.UUID(required=True)


class MessageCreated(Schema):
    message_id = fields.UUID(required=True)
    seq = fields.Integer(required=True, validate=validate.Range(min=1))


class ReadState(Schema):
    conversation_id = fields.UUID(required=True)
    user_id = fields.UUID(required=True)
    last_read_seq = fields.Integer(required=True, validate=validate.Range(min=0))


class UnreadState(ReadState):
    marked_unread = fields.Boolean(required=True,
                                   metadata={"description": "Flagged (no from_seq was given)."})


class UserSettingsShown(Schema):
    user_id = fields.UUID(required=True)
    badge_policy = fields.String(required=True, allow_none=True, metadata={
        "description": "messages, conversations, mentions or none; null: the server's."})


class MemberSettings(Membership):
    notify = fields.String(required=True, validate=validate.OneOf(LEVELS))


class Bumped(Schema):
    bumped = fields.Integer(required=True, validate=validate.Range(min=0))


class Queued(Schema):
    queued = fields.Integer(required=True, validate=validate.Range(min=0))
    bumped = fields.Integer(validate=validate.Range(min=0), metadata={
        "description": "On a Redis Cluster whose nodes took part of the bump: the users bumped."})


class StreamTicket(Schema):
    ticket = fields.String(required=True, metadata={"description": "Single use; `?ticket=`."})
    expires_in = fields.Integer(required=True, validate=validate.Range(min=1))


class Health(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["ok"]))


class PushQueue(Schema):
    queued = fields.Integer(required=True, validate=validate.Range(min=0))
    oldest_seconds = fields.Float(required=True, validate=validate.Range(min=0),
                                  metadata={"description": "Age of the oldest queued job's write."})


class ReplicaState(Schema):
    name = fields.String(required=True, metadata={"description": "host:port"})
    state = fields.String(required=True,
                          validate=validate.OneOf(["ok", "unavailable", "not_a_replica"]))
    lag_bytes = fields.Integer(validate=validate.Range(min=0),
                               metadata={"description": "WAL the replica has yet to replay."})


class Readiness(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["ok", "unavailable"]))


class AdminReadiness(Schema):
    """/readyz on the operators' address (COUNTS_ADMIN_BIND), not on this one."""

    status = fields.String(required=True, validate=validate.OneOf(["ok", "degraded", "unavailable"]))
    postgres = fields.String(required=True, validate=validate.OneOf(["ok", "unavailable"]))
    redis = fields.String(required=True, validate=validate.OneOf(["ok", "unavailable"]))
    # Only with COUNTS_JWKS_URL: stale = the endpoint fails and the keys fetched before are used.
    jwks = fields.String(validate=validate.OneOf(["ok", "stale", "unavailable"]))
    push = fields.Nested(PushQueue, metadata={"description": "The push queue, while Postgres answers."})
    postgres_replicas = fields.List(fields.Nested(ReplicaState), metadata={
        "description": "Read replicas (DATABASE_REPLICA_URLS), when configured."})


class DeviceCreated(Schema):
    device_id = fields.UUID(required=True)


class DeviceShown(Schema):
    device_id = fields.UUID(required=True)
    platform = fields.String(required=True, validate=validate.OneOf(providers.PLATFORMS))
    token_hint = fields.String(required=True, metadata={
        "description": "sha256: and the first 12 hex digits of the token's SHA-256 (never the token)."})
    registered_at = fields.String(required=True, metadata={"format": "date-time"})
    endpoint_host = fields.String(metadata={"description": "webpush: the push service's host."})
    topic = fields.String(metadata={"description": "apns: the app's bundle id."})
    environment = fields.String(validate=validate.OneOf(["production", "sandbox"]))


class Devices(Schema):
    devices = fields.List(fields.Nested(DeviceShown), required=True)


class WebPushKey(Schema):
    public_key = fields.String(required=True, metadata={
        "description": "The VAPID public key (uncompressed P-256 point, base64url)."})


class Problem(Schema):
    """RFC 9457 problem details; extension members are allowed."""

    class Meta:
        unknown = INCLUDE

    type = fields.String(required=True)
    title = fields.String(required=True)
    status = fields.Integer(required=True)
    detail = fields.String(required=True)
    errors = fields.Dict(metadata={"description": "Per-field messages of an invalid body (422)."})


# The device registrations are each push provider's own (its REGISTRATION schema).
DEVICE_SCHEMAS = {module.REGISTRATION.__name__: module.REGISTRATION
                  for module in providers.modules().values()}
REQUEST_SCHEMAS = {"ConversationCreate": schemas.ConversationCreate, "MemberAdd": schemas.MemberAdd,
                   "MessageMentions": schemas.MessageMentions,
                   "MessageCreate": schemas.MessageCreate, "MarkRead": schemas.MarkRead,
                   "MemberUpdate": schemas.MemberUpdate, "MarkUnread": schemas.MarkUnread,
                   "UserSettings": schemas.UserSettings,
                   "Bump": schemas.Bump, "BatchUser": schemas.BatchUser, "Batch": schemas.Batch,
                   "SubscriptionKeys": webpush.SubscriptionKeys, "Subscription": webpush.Subscription,
                   "OldSubscription": webpush.OldSubscription,
                   "Resubscription": webpush.Resubscription,
                   **DEVICE_SCHEMAS}
RESPONSE_SCHEMAS = {cls.__name__: cls for cls in (
    ConversationUnread, ThreadTotals, Counts, BatchNotModified, BatchFresh, BatchUnavailable,
    ConversationCreated, Membership, MessageCreated, ReadState, UnreadState, MemberSettings,
    UserSettingsShown, Bumped, Queued, StreamTicket, Health, PushQueue,
    Readiness, AdminReadiness, DeviceCreated, DeviceShown, Devices, WebPushKey, Problem)}


# --- reusable headers, parameters and error responses ------------------------------------------

HEADERS: dict[str, dict[str, Any]] = {
    "ETag": {"description": "The user's change marker, quoted.", "required": True,
             "schema": {"type": "string", "pattern": r'^"[^"]*"$'}},
    "Cache-Control": {"required": True, "schema": {"type": "string", "enum": ["private, no-cache"]}},
    "Vary": {"required": True, "schema": {"type": "string", "enum": ["Authorization"]}},
    "X-Poll-Interval": {"description": "Seconds a client should wait before its next poll.",
                        "required": True, "schema": {"type": "integer", "minimum": 0}},
    "Retry-After": {"description": "Seconds to wait before retrying.", "required": True,
                    "schema": {"type": "integer", "minimum": 0}},
    "WWW-Authenticate": {"required": True, "schema": {"type": "string", "pattern": "^Bearer"}},
    "Preference-Applied": {"description": "A long-poll's wait, as applied (RFC 7240).",
                           "schema": {"type": "string", "pattern": "^wait=[0-9]+$"}},
}
COUNTS_HEADERS = ("ETag", "Cache-Control", "Vary", "X-Poll-Interval")

PATH_IDS = {name: f"{name} must be a UUID (400 otherwise)."
            for name in ("user_id", "conversation_id", "message_id", "device_id")}

# status: (component name, description, required headers)
ERRORS: dict[int, tuple[str, str, tuple[str, ...]]] = {
    400: ("BadRequest", "Malformed JSON, or a path id that is not a UUID.", ()),
    401: ("Unauthorized", "No bearer token, or a bad one.", ("WWW-Authenticate",)),
    403: ("Forbidden", "The token may not do this.", ()),
    404: ("NotFound", "No such conversation, member, message or route.", ()),
    413: ("PayloadTooLarge", "The body is over the size limit.", ()),
    415: ("UnsupportedMediaType", "The body is not application/json.", ()),
    422: ("InvalidInput", "The body is JSON but not valid; `errors` says where.", ()),
    429: ("TooManyRequests", "Polling faster than allowed.", ("Retry-After",)),
    503: ("Unavailable", "Postgres (or Redis, where nothing else can answer) is unreachable.",
          ("Retry-After",)),
}


def header_refs(names: tuple[str, ...]) -> dict[str, str]:
    """Headers of a response, as references to the header components."""
    return {name: name for name in names}


def without_body(status: int) -> dict:
    """An error response as HEAD answers it: the status and headers, no body."""
    _, description, headers = ERRORS[status]
    return {"description": description, **({"headers": header_refs(headers)} if headers else {})}


def response_with_body(description: str, schema: Any, headers: tuple[str, ...] = (),
                       media_type: str = JSON) -> dict:
    """A documented response with a body (JSON unless `media_type` says otherwise)."""
    response: dict[str, Any] = {"description": description,
                                "content": {media_type: {"schema": schema}}}
    if headers:
        response["headers"] = header_refs(headers)
    return response


def operation(summary: str, operation_id: str, answers: dict[int, dict], errors: tuple[int, ...],
              body: str | dict | None = None, public: bool = False) -> dict:
    """One operation: its successful answers, the error responses it may give, its request body."""
    responses: dict[Any, Any] = {str(status): answer for status, answer in answers.items()}
    v1_errors = () if public else (400, 401, 403, 429, 503)
    for status in sorted({*v1_errors, *errors}):
        responses[str(status)] = ERRORS[status][0]
    spec: dict[str, Any] = {"summary": summary, "operationId": operation_id, "responses": responses}
    if body is not None:
        spec["requestBody"] = {"required": True, "content": {JSON: {"schema": body}}}
    if public:
        spec["security"] = []
    return spec


# --- the paths ---------------------------------------------------------------------------------

def counts_operations() -> dict[str, dict]:
    """GET and HEAD of one user's counts: 200 with a body, or 304 from Redis alone."""
    not_modified = {"description": "The ETag in If-None-Match is current; no body.",
                    "headers": header_refs(COUNTS_HEADERS)}
    if_none_match = {"in": "header", "name": "If-None-Match", "required": False,
                     "description": "The ETag of the last 200 (RFC 9110: weak comparison, lists, *).",
                     "schema": {"type": "string"}}
    get = operation("A user's unread counts", "getUnreadCounts",
                    {200: response_with_body("The counts.", "Counts", COUNTS_HEADERS), 304: not_modified},
                    (404,))
    head = operation("As GET, without a body", "headUnreadCounts",
                     {200: {"description": "As GET.", "headers": header_refs(COUNTS_HEADERS)},
                      304: not_modified}, (404,))
    prefer = {"in": "header", "name": "Prefer", "required": False,
              "description": "`wait=N`: a long-poll, held until the counts change (200) or N s "
                             "pass (304); N is capped by the server.", "schema": {"type": "string"}}
    for answer in get["responses"].values():
        if isinstance(answer, dict):
            answer["headers"]["Preference-Applied"] = "Preference-Applied"
    for spec in (get, head):
        spec["parameters"] = [if_none_match, prefer]
    head["responses"].update({status: without_body(int(status)) for status in head["responses"]
                              if int(status) in ERRORS})
    return {"get": get, "head": head}


def live_paths() -> dict[str, dict]:
    """Stream tickets, SSE and WebSocket. Streams are marked x-counts-stream: they never end by
    themselves, so a fuzzer sending a request and reading the whole answer must leave them out."""
    since = {"in": "query", "name": "etag", "required": False, "schema": {"type": "string"},
             "description": "The ETag the client holds: nothing is resent if it is current."}
    ticket = {"in": "query", "name": "ticket", "required": False, "schema": {"type": "string"},
              "description": "A stream ticket, instead of the Authorization header (browsers)."}
    device = {"in": "query", "name": "device_id", "required": False,
              "schema": {"type": "string", "format": "uuid"},
              "description": "The push device this app is (its registration's device_id): while "
                             "the stream is open, that device gets no alerts (COUNTS_PUSH_PRESENCE)."}
    events = {"description": "Event `counts` (id: the ETag, data: the counts) at once and on "
                             "every change; comment heartbeats.",
              "content": {"text/event-stream": {"schema": {"type": "string"}}}}
    stream = operation("A user's counts as Server-Sent Events", "streamUnreadCounts",
                       {200: events}, (404,))
    websocket = operation("A user's counts over a WebSocket", "websocketUnreadCounts", {
        101: {"description": 'Frames {"etag", "counts"} at once and on every change.'},
        426: {"description": "Not a WebSocket upgrade."}}, (404,))
    for spec in (stream, websocket):
        spec["parameters"], spec["x-counts-stream"] = [since, ticket, device], True
    return {
        "/v1/users/{user_id}/stream-tickets": {"parameters": ["user_id"], "post": operation(
            "A single-use ticket to this user's stream (that user, or services)",
            "createStreamTicket", {201: response_with_body("Valid expires_in seconds.",
                                                           "StreamTicket")}, (404,))},
        "/v1/users/{user_id}/unread-counts/stream": {"parameters": ["user_id"], "get": stream},
        "/v1/users/{user_id}/unread-counts/ws": {"parameters": ["user_id"], "get": websocket},
    }


def batch_results() -> dict:
    """The batch answer: one entry per requested user, in request order."""
    entry = {"oneOf": [{"$ref": f"#/components/schemas/{name}"}
                       for name in ("BatchNotModified", "BatchFresh", "BatchUnavailable")]}
    return {"type": "object", "required": ["users"], "additionalProperties": False,
            "properties": {"users": {"type": "array", "items": entry}}}


def paths() -> dict[str, dict]:
    """Every route of the service, each with its parameters and operations."""
    body_errors = (413, 415, 422)
    optional_retry = {"Retry-After": {"description": "Sent when some entries have status 503.",
                                      "schema": {"type": "integer", "minimum": 0}}}
    batch_ok = {"description": "One result per user.", "headers": optional_retry,
                "content": {JSON: {"schema": batch_results()}}}
    return {
        "/v1/users/{user_id}/unread-counts": {"parameters": ["user_id"], **counts_operations()},
        **live_paths(),
        "/v1/unread-counts/batch": {"post": operation(
            "Counts of up to 1,000 users (services)", "postBatch", {200: batch_ok}, body_errors,
            "Batch")},
        "/v1/conversations": {"post": operation(
            "Create a conversation (services)", "createConversation",
            {201: response_with_body("Created.", "ConversationCreated")}, (404, *body_errors),
            "ConversationCreate")},
        "/v1/conversations/{conversation_id}": {"parameters": ["conversation_id"], "delete": operation(
            "Delete a conversation (services)", "deleteConversation",
            {204: {"description": "Deleted; every member was bumped."}}, (404,))},
        "/v1/conversations/{conversation_id}/members": {"parameters": ["conversation_id"], "post": operation(
            "Add a member (services)", "addMember",
            {201: response_with_body("Joined.", "Membership"),
             200: response_with_body("Was already a member.", "Membership")},
            (404, *body_errors), "MemberAdd")},
        "/v1/conversations/{conversation_id}/members/{user_id}": {
            "parameters": ["conversation_id", "user_id"], "delete": operation(
                "Remove a member (services)", "removeMember",
                {204: {"description": "Removed; they were bumped."}}, (404,)), "patch": operation(
                "Set a member's notify level (that user, or services)", "updateMember",
                {200: response_with_body("The level now; bumped if their counts changed.",
                                         "MemberSettings")}, (404, *body_errors), "MemberUpdate")},
        "/v1/conversations/{conversation_id}/messages": {"parameters": ["conversation_id"], "post": operation(
            "Send a message (the sender, or services)", "sendMessage",
            {201: response_with_body("Sent; every member whose counts changed was bumped.",
                                     "MessageCreated")}, (404, *body_errors), "MessageCreate")},
        "/v1/conversations/{conversation_id}/messages/{message_id}": {
            "parameters": ["conversation_id", "message_id"], "delete": operation(
                "Delete a message (services)", "deleteMessage",
                {204: {"description": "Deleted (or already was)."}}, (404,))},
        "/v1/conversations/{conversation_id}/read": {"parameters": ["conversation_id"], "post": operation(
            "Mark read, never backwards (that user, or services)", "markRead",
            {200: response_with_body("The read state now.", "ReadState")}, (404, *body_errors), "MarkRead")},
        "/v1/conversations/{conversation_id}/unread": {"parameters": ["conversation_id"], "post": operation(
            "Mark unread: a flag, or from message from_seq on (that user, or services)", "markUnread",
            {200: response_with_body("The read state now.", "UnreadState")}, (404, *body_errors),
            "MarkUnread")},
        "/v1/users/{user_id}/settings": {"parameters": ["user_id"], "patch": operation(
            "Set the user's badge policy (that user, or services)", "updateUserSettings",
            {200: response_with_body("The settings now; bumped if they changed.",
                                     "UserSettingsShown")}, body_errors, "UserSettings")},
        "/v1/markers/bump": {"post": operation(
            "Bump users' markers after a write elsewhere (services)", "bumpMarkers",
            {200: response_with_body("Bumped.", "Bumped"),
             202: response_with_body("Redis is unreachable; queued in Postgres.", "Queued")},
            body_errors, "Bump")},
        **push_paths(body_errors),
        "/healthz": {"get": operation("Liveness", "healthz",
                                      {200: response_with_body("The process answers.", "Health")},
                                      (), public=True)},
        "/readyz": {"get": operation("Readiness (the detail is on the operators' address)", "readyz", {
            200: response_with_body("Postgres answers.", "Readiness"),
            503: response_with_body("Postgres is unreachable.", "Readiness", ("Retry-After",))},
            (), public=True)},
        "/openapi.json": {"get": operation("This document", "openapi", {
            200: response_with_body("OpenAPI 3.", {"type": "object"})}, (), public=True)},
    }


def push_paths(body_errors: tuple[int, ...]) -> dict[str, dict]:
    """The device registry and the Web Push key."""
    registration = {"oneOf": [{"$ref": f"#/components/schemas/{name}"} for name in DEVICE_SCHEMAS]}
    return {
        "/v1/users/{user_id}/devices": {"parameters": ["user_id"], "post": operation(
            "Register a device for push (that user, or services)", "registerDevice",
            {201: response_with_body("Registered.", "DeviceCreated"),
             200: response_with_body("This token was registered already: its id.", "DeviceCreated")},
            body_errors, registration), "get": operation(
            "A user's devices, tokens masked (that user, or services)", "listDevices",
            {200: response_with_body("The devices.", "Devices")}, ())},
        "/v1/users/{user_id}/devices/{device_id}": {
            "parameters": ["user_id", "device_id"], "delete": operation(
                "Forget a device (that user, or services)", "deleteDevice",
                {204: {"description": "Forgotten."}}, (404,))},
        "/v1/push/webpush-key": {"get": operation(
            "The Web Push applicationServerKey", "webpushKey",
            {200: response_with_body("The VAPID public key.", "WebPushKey")}, (404,), public=True)},
        "/v1/push/webpush/resubscribe": {"post": operation(
            "Replace a browser's subscription from its service worker (pushsubscriptionchange), "
            "authorised by the old subscription's endpoint and auth secret", "resubscribeWebPush",
            {200: response_with_body("Replaced; the device keeps its id.", "DeviceCreated")},
            (400, 403, 404, 413, 415, 422, 429, 503), "Resubscription", public=True)},
    }


def build_spec(writable: bool = True) -> dict:
    """The whole OpenAPI document, as a dict; without our schema's writes when not `writable`
    (attached mode, where they answer 404)."""
    spec = APISpec(title="counts", version=API_VERSION, openapi_version=OPENAPI_VERSION,
                   plugins=[MarshmallowPlugin()],
                   info={"description": "Unread-message counts that answer 304 from Redis."},
                   security=[{"bearer": []}])
    spec.components.security_scheme("bearer", {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": "HS256 with the service's secret, or ES256/RS256/EdDSA with a key its "
                       "identity provider publishes (JWKS). Supabase's claims: role "
                       "'authenticated' with sub = the user's UUID and aud 'authenticated', or "
                       "role 'service_role'."})
    for name, schema in {**REQUEST_SCHEMAS, **RESPONSE_SCHEMAS}.items():
        spec.components.schema(name, schema=schema)
    for name, header in HEADERS.items():
        spec.components.header(name, header)
    for name, description in PATH_IDS.items():
        spec.components.parameter(name, "path", {"description": description, "schema": UUID_SCHEMA})
    for name, description, headers in ERRORS.values():
        spec.components.response(name, response_with_body(description, "Problem", headers, PROBLEM))
    for path, item in paths().items():
        if not writable and path.startswith("/v1/conversations"):
            continue
        parameters = item.pop("parameters", [])
        spec.path(path=path, parameters=parameters, operations=item)
    return spec.to_dict()


def spec_bytes(writable: bool = True) -> bytes:
    """The document serialized once, for GET /openapi.json."""
    return json.dumps(build_spec(writable), separators=(",", ":"), sort_keys=True).encode()
