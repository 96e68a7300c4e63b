"""Real HTTP clients against the live counts endpoint: curl's ETag files, CacheControl, REDbot.

Our own tests check the headers we meant to send; these check that clients and linters written by
others, to the RFCs, revalidate with them and find nothing to complain about.
"""

import subprocess
from configparser import ConfigParser
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import pytest
import requests
import thor
from cachecontrol import CacheControl
from httplint.note import categories, levels
from redbot.resource import HttpResource

from tests.support.api import Api, new_user
from tests.support.services import LiveClient


@pytest.fixture
def live_api(live_server, tokens) -> Api:
    return Api(LiveClient(live_server.url), tokens)


@dataclass
class Reader:
    """A user with one unread message, from `alice` in `conversation`."""

    id: UUID
    alice: UUID
    conversation: str


@pytest.fixture
def bob(live_api) -> Reader:
    alice, bob = new_user(), new_user()
    conversation = live_api.conversation(alice, bob)
    assert live_api.send(conversation, alice).status_code == 201
    return Reader(bob, alice, conversation)


def counts_url(server, user) -> str:
    return f"{server.url}/v1/users/{user}/unread-counts"


def bump(server, tokens, user) -> None:
    """What a writer service does after committing: POST /v1/markers/bump."""
    response = requests.post(f"{server.url}/v1/markers/bump", headers=tokens.service(),
                             json={"user_ids": [str(user)]}, timeout=10)
    assert response.json() == {"bumped": 1}


# --- (a) curl --etag-save / --etag-compare ------------------------------------------------------

def test_curl_etag_files_round_trip(live_server, tokens, tmp_path: Path):
    user = new_user()
    etag_file = tmp_path / "counts.etag"
    auth = tokens.user(user)["Authorization"]

    def curl() -> tuple[str, str]:
        """One poll as the README's curl does it: the status, and the body."""
        done = subprocess.run(
            ["curl", "-sS", "--etag-save", str(etag_file), "--etag-compare", str(etag_file),
             "-o", str(tmp_path / "body"), "-w", "%{http_code}", "-H", f"Authorization: {auth}",
             counts_url(live_server, user)],
            capture_output=True, text=True, timeout=30, check=True)
        return done.stdout, (tmp_path / "body").read_text() if done.stdout == "200" else ""

    status, body = curl()
    assert status == "200" and '"total": 0' in body
    first_etag = etag_file.read_text().strip()
    assert first_etag.startswith('"') and first_etag.endswith('"')
    assert curl()[0] == "304"
    assert etag_file.read_text().strip() == first_etag  # curl kept it through the 304

    bump(live_server, tokens, user)
    assert curl()[0] == "200"
    assert etag_file.read_text().strip() != first_etag
    assert curl()[0] == "304"  # and the new ETag revalidates in turn


# --- (b) requests + CacheControl revalidating transparently -------------------------------------

def test_cachecontrol_serves_the_cached_body_after_a_304_and_fresh_after_a_change(
        live_server, live_api, tokens, bob):
    url = counts_url(live_server, bob.id)
    session = CacheControl(requests.Session())
    # What the server itself answered, before CacheControl turned a 304 into the cached 200.
    controller = session.get_adapter(url).controller
    server_statuses: list[int] = []
    update = controller.update_cached_response

    def spy(request, response):
        server_statuses.append(response.status)
        return update(request, response)

    controller.update_cached_response = spy
    # One token for the whole session, as a real client keeps it: a freshly minted token is a
    # different Authorization header (its exp moves each second), and Vary: Authorization rightly
    # stops CacheControl from answering it with the entry cached for the old one.
    bob_auth = tokens.user(bob.id)
    with session:
        first = session.get(url, headers=bob_auth, timeout=10)
        assert first.status_code == 200 and not first.from_cache
        assert first.json()["total"] == 1

        second = session.get(url, headers=bob_auth, timeout=10)
        assert second.request.headers["If-None-Match"] == first.headers["ETag"]
        assert server_statuses == [304]
        assert second.status_code == 200 and second.from_cache
        assert second.json() == first.json()

        # Vary: Authorization: another user's request is never answered from Bob's cached copy.
        other = session.get(url, headers=tokens.user(new_user()), timeout=10)
        assert other.status_code == 403 and not other.from_cache

        bump(live_server, tokens, bob.id)  # marker moved, counts did not
        bumped = session.get(url, headers=bob_auth, timeout=10)
        assert bumped.status_code == 200 and not bumped.from_cache
        assert bumped.headers["ETag"] != first.headers["ETag"]
        assert bumped.json() == first.json()

        assert live_api.send(bob.conversation, bob.alice).status_code == 201  # counts moved
        fresh = session.get(url, headers=bob_auth, timeout=10)
        assert fresh.status_code == 200 and not fresh.from_cache
        assert fresh.json()["total"] == 2
        again = session.get(url, headers=bob_auth, timeout=10)
        assert again.from_cache and again.json()["total"] == 2
        assert server_statuses == [304, 304]


# --- (c) REDbot ---------------------------------------------------------------------------------

def redbot_check(url: str, method: str, headers: list[tuple[str, str]]) -> HttpResource:
    """Run REDbot's checks on one request, as its CLI does, but with our Authorization header.

    The CLI (redbot_cli) takes no request headers, so this drives its Python API: an HttpResource
    on thor's event loop, with local access enabled (REDbot refuses loopback addresses otherwise).
    """
    parser = ConfigParser()
    parser.read_dict({"redbot": {"enable_local_access": "True"}})
    resource = HttpResource(parser["redbot"])
    resource.set_request(url, method=method, headers=headers)

    @thor.events.on(resource)
    def check_done() -> None:
        thor.stop()

    thor.schedule(30, thor.stop)  # a hung check fails the test below instead of hanging it
    resource.check()
    thor.run()
    assert resource.check_done, f"REDbot did not finish: {resource.fetch_error}"
    return resource


def notes_of(resource: HttpResource) -> list[tuple[str, str, str]]:
    """Every note REDbot made (its subrequests' notes land on the base response too)."""
    return [(note.category.name, note.level.name, type(note).__name__)
            for note in resource.response.notes]


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_redbot_finds_nothing_to_warn_about(live_server, tokens, bob, method, monkeypatch):
    # REDbot's one HTTP client pools keep-alive connections and closes them only at the first
    # thor.stop of the process; open ones make gunicorn's graceful stop wait. Pool none.
    monkeypatch.setattr(HttpResource.client, "idle_timeout", 0)
    resource = redbot_check(counts_url(live_server, bob.id), method,
                            list(tokens.user(bob.id).items()))
    assert resource.response.status_code == 200
    notes = notes_of(resource)
    assert [n for n in notes if n[1] in (levels.WARN.name, levels.BAD.name)] == []
    # The notes that matter for this endpoint, exactly: private, always revalidated, and the
    # revalidation answered by a 304 that kept every header the 200 had (no MISSING_HDRS_304).
    caching = {n for n in notes if n[0] in (categories.CACHING.name, categories.VALIDATION.name)}
    assert caching == {("CACHING", "INFO", "STORE_PRIVATE_CC"),
                       ("CACHING", "INFO", "FRESHNESS_NO_CACHE"),
                       ("VALIDATION", "GOOD", "INM_304")}
    validation = resource.subreqs["etag_validate"].response
    assert validation.status_code == 304
