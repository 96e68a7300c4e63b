"""The OpenAPI document (counts.http.openapi, GET /openapi.json); schemathesis fuzzing the live
service with it."""

import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import pytest
import requests
import schemathesis
from hypothesis import given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode, checks
from schemathesis.specs.openapi.definitions import OPENAPI_30_VALIDATOR

from counts.http import openapi
from counts.http.views import docs
from tests.support.api import new_user

EXAMPLES_PER_OPERATION = 50
CONFORMANCE = [checks.status_code_conformance, checks.content_type_conformance,
               checks.response_headers_conformance, checks.response_schema_conformance]


# --- the document ------------------------------------------------------------------------------

def test_openapi_json_is_served_without_auth(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json()["openapi"].startswith("3.")


def test_document_is_valid_openapi_3(client):
    document = client.get("/openapi.json").get_json()
    errors = [error.message for error in OPENAPI_30_VALIDATOR.iter_errors(document)]
    assert errors == []


def test_document_is_built_once_at_app_creation(app, client, monkeypatch):
    def fail():
        raise AssertionError("the document was built again")

    monkeypatch.setattr(openapi, "build_spec", fail)
    first, second = client.get("/openapi.json"), client.get("/openapi.json")
    assert first.data == second.data == app.extensions[docs.SPEC_KEY]


def test_every_route_and_method_is_documented(app, client):
    paths = client.get("/openapi.json").get_json()["paths"]
    served: dict[str, set[str]] = {}  # a path may be served by several views (GET and POST)
    for rule in app.url_map.iter_rules():
        served.setdefault(rule.rule.replace("<", "{").replace(">", "}"), set()).update(rule.methods)
    for path, methods in served.items():
        assert path in paths, f"{path} is not documented"
        documented = {method.upper() for method in paths[path] if method != "parameters"}
        methods -= {"OPTIONS"}
        if "HEAD" not in documented:
            methods -= {"HEAD"}  # Flask's automatic HEAD, documented only where clients use it
        assert methods == documented, path


def test_path_ids_are_uuids(client):
    document = client.get("/openapi.json").get_json()
    for name in ("user_id", "conversation_id", "message_id"):
        assert document["components"]["parameters"][name]["schema"] == {"type": "string", "format": "uuid"}


def test_request_bodies_are_the_validating_schemas(client):
    schemas = client.get("/openapi.json").get_json()["components"]["schemas"]
    assert schemas["Bump"]["properties"]["user_ids"]["maxItems"] == 10_000
    assert schemas["Batch"]["properties"]["users"]["maxItems"] == 1_000
    assert schemas["MessageCreate"]["additionalProperties"] is False
    assert schemas["MarkRead"]["properties"]["up_to_seq"]["nullable"] is True


def test_errors_are_problem_json_with_retry_after_on_429_and_503(client):
    responses = client.get("/openapi.json").get_json()["components"]["responses"]
    for name in ("BadRequest", "Unauthorized", "Forbidden", "NotFound", "PayloadTooLarge",
                 "UnsupportedMediaType", "InvalidInput", "TooManyRequests", "Unavailable"):
        assert set(responses[name]["content"]) == {"application/problem+json"}, name
    assert "Retry-After" in responses["TooManyRequests"]["headers"]
    assert "Retry-After" in responses["Unavailable"]["headers"]
    assert "WWW-Authenticate" in responses["Unauthorized"]["headers"]


def test_counts_200_and_304_document_their_headers(client):
    document = client.get("/openapi.json").get_json()
    answers = document["paths"]["/v1/users/{user_id}/unread-counts"]["get"]["responses"]
    for status in ("200", "304"):
        assert set(answers[status]["headers"]) == {"ETag", "Cache-Control", "Vary", "X-Poll-Interval",
                                                   "Preference-Applied"}
    assert "content" not in answers["304"]


def test_bearer_jwt_everywhere_but_the_public_endpoints(client):
    document = client.get("/openapi.json").get_json()
    assert document["components"]["securitySchemes"]["bearer"]["bearerFormat"] == "JWT"
    assert document["security"] == [{"bearer": []}]
    for path in ("/healthz", "/readyz", "/openapi.json"):
        assert document["paths"][path]["get"]["security"] == []


# --- fuzzing the live service ------------------------------------------------------------------
# One gunicorn per role, every operation fuzzed inside one test: schemathesis' pytest loader for a
# fixture-built schema (`schemathesis.pytest.from_fixture`) sets `Function._nodeid`, which pytest 9
# no longer has, and one gunicorn per operation would cost more than the fuzzing itself.

@dataclass
class FuzzTarget:
    """Who the fuzzer is (a service, or one user), the real ids it may use, and what it saw."""

    role: str
    headers: dict[str, str]
    user: uuid.UUID
    conversation: str
    statuses: Counter = field(default_factory=Counter)
    cases: int = 0


@pytest.fixture(params=["service", "user"])
def fuzz_target(request, live_server, tokens) -> FuzzTarget:
    """A conversation of `user` and another member, with a message unread by `user`."""
    user, other = new_user(), new_user()
    created = requests.post(live_server.url + "/v1/conversations", headers=tokens.service(),
                            json={"member_ids": [str(user), str(other)]}, timeout=10)
    conversation = created.json()["conversation_id"]
    sent = requests.post(f"{live_server.url}/v1/conversations/{conversation}/messages",
                         headers=tokens.service(), json={"sender_id": str(other), "body": "hi"},
                         timeout=10)
    assert sent.status_code == 201
    headers = tokens.service() if request.param == "service" else tokens.user(user)
    return FuzzTarget(request.param, headers, user, conversation)


def use_real_ids(case: schemathesis.Case, target: FuzzTarget) -> None:
    """Point a schema-valid case at the target's user and conversation, to get past 403 and 404."""
    for name, value in (("user_id", str(target.user)), ("conversation_id", target.conversation)):
        if name in (case.path_parameters or {}):
            case.path_parameters[name] = value
    if isinstance(case.body, dict):
        for name in ("user_id", "sender_id"):
            if name in case.body:
                case.body[name] = str(target.user)


def check_answer(case: schemathesis.Case, target: FuzzTarget) -> None:
    """Send one case as the target; no 5xx but a 503 with Retry-After, and the answer as documented."""
    response = case.call(headers=target.headers, timeout=10)
    target.cases += 1
    target.statuses[response.status_code] += 1

    def what() -> str:  # the token is filtered out of the curl command
        return f"{case.as_curl_command()} -> {response.status_code} {response.text[:300]!r}"

    if response.status_code >= 500:
        assert response.status_code == 503 and response.headers.get("retry-after"), what()
    case.validate_response(response, checks=CONFORMANCE)
    if response.status_code >= 400 and case.method != "HEAD":
        assert response.headers.get("content-type") == ["application/problem+json"], what()
        assert json.loads(response.text)["status"] == response.status_code, what()


def fuzz(operation: schemathesis.APIOperation, target: FuzzTarget) -> None:
    """Up to EXAMPLES_PER_OPERATION cases of one operation, valid and invalid alike."""
    cases = operation.as_strategy(GenerationMode.POSITIVE)
    if operation.path_parameters or operation.body:  # something that can be made invalid
        cases = st.one_of(cases, operation.as_strategy(GenerationMode.NEGATIVE))

    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None)
    @given(case=cases, real_ids=st.booleans())
    def run(case: schemathesis.Case, real_ids: bool) -> None:
        if real_ids and case.meta is not None and case.meta.generation.mode.is_positive:
            use_real_ids(case, target)
        check_answer(case, target)

    run()


def test_fuzzed_requests_get_documented_answers_and_no_5xx(live_server, fuzz_target, capsys):
    # Auth is the one header the fuzzer must not drop or mangle: tests/identity/test_auth.py covers it.
    config = schemathesis.Config.from_dict({"base-url": live_server.url,
                                            "generation": {"with-security-parameters": False}})
    schema = schemathesis.openapi.from_url(live_server.url + "/openapi.json", config=config)
    started, failures = time.monotonic(), []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.definition.raw.get("x-counts-stream"):
            continue  # never ends by itself: tests/live/test_streams.py covers it
        try:
            fuzz(operation, fuzz_target)
        except Exception as error:  # every operation is fuzzed; all their failures are reported
            failures.append(f"{operation.label}: {error}")
    with capsys.disabled():  # the tally shows in every run, not only in a failure's report
        print(f"\nschemathesis as {fuzz_target.role}: {fuzz_target.cases} cases in "
              f"{time.monotonic() - started:.1f} s, statuses {dict(sorted(fuzz_target.statuses.items()))}")
    assert not failures, "\n\n".join(failures)
