"""A real headless Chromium, on a page served from another origin, runs the README's browser code:
the fetch poller gets 200 then 304, EventSource and WebSocket (each with a ticket) get a change."""

import http.server
import json
import shutil
import threading
from urllib.parse import quote

import pytest
import requests
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from tests.support.api import new_user
from tests.support.docs import README, code_blocks
from tests.support.services import Gunicorn, free_port, wait_until

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage")

GLUE = """
window.results = { statuses: [], fetch: [], sse: [], ws: [], errors: [] };
window.addEventListener("error", (e) => results.errors.push(String(e.message)));
const realFetch = window.fetch;  // watch the poller's statuses without touching its code
window.fetch = async (...args) => {
  const res = await realFetch(...args);
  if (String(args[0]).endsWith("/unread-counts")) results.statuses.push(res.status);
  return res;
};
const cfg = JSON.parse(decodeURIComponent(location.hash.slice(1)));
const getToken = async () => cfg.token;
const options = { baseUrl: cfg.base, userId: cfg.user, getToken };
pollUnreadCounts({ ...options, onChange: (c) => results.fetch.push(c),
                   signal: new AbortController().signal, interval: 1 })
  .catch((e) => results.errors.push("poller: " + e));
streamUnreadCounts({ ...options, onChange: (c) => results.sse.push(c) });
socketUnreadCounts({ ...options, onChange: (c) => results.ws.push(c) });
"""


def readme_js() -> str:
    """Every ```js block of the README: the poller, the EventSource and WebSocket examples."""
    return "\n".join(code_blocks(README, lang="js"))


class PageServer:
    """The test page on an origin of its own (another port of 127.0.0.1)."""

    def __init__(self, html: str):
        page = html.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args):
                pass

        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def browser(monkeypatch):
    """Headless Chromium through Debian's chromedriver (Selenium Manager never runs)."""
    monkeypatch.setenv("SE_OFFLINE", "true")  # the network is closed: nothing to download
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.fail("chromium and chromium-driver are missing: `make test` installs them")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_script_timeout(10)
    yield driver
    driver.quit()


@pytest.fixture
def page():
    server = PageServer(f"<!doctype html><title>counts</title><script>{readme_js()}\n{GLUE}</script>")
    yield server
    server.close()


@pytest.fixture
def service(server_env, pg, redis_client, page, tmp_path):
    """The service allowing the page's origin, polls answered with X-Poll-Interval 1."""
    env = {**server_env, "COUNTS_CORS_ORIGINS": f"http://127.0.0.1:{page.port}",
           "COUNTS_POLL_INTERVAL": "1"}
    server = Gunicorn(env, workers=1, log_path=tmp_path / "gunicorn.log").start()
    yield server
    server.stop()


def test_readme_browser_code_gets_counts_and_changes_from_another_origin(browser, page, service,
                                                                         tokens):
    user, friend = str(new_user()), str(new_user())
    created = requests.post(f"{service.url}/v1/conversations", headers=tokens.service(),
                            json={"member_ids": [user, friend]}, timeout=10)
    conversation = created.json()["conversation_id"]
    config = {"base": service.url, "user": user,
              "token": tokens.user(user)["Authorization"].split()[1]}
    browser.get(f"http://127.0.0.1:{page.port}/#{quote(json.dumps(config))}")

    def results() -> dict:
        return browser.execute_script("return window.results")

    wait_until(lambda: results()["sse"] and results()["ws"] and 304 in results()["statuses"],
               timeout=30, what="first counts on every transport and a 304")
    assert results()["statuses"][0] == 200  # the poller: 200, then 304s
    sent = requests.post(f"{service.url}/v1/conversations/{conversation}/messages",
                         headers=tokens.user(friend), json={"sender_id": friend, "body": "hi"},
                         timeout=10)
    assert sent.status_code == 201

    def saw_the_message(transport: str) -> bool:
        return any(counts["total"] == 1 for counts in results()[transport])

    for transport in ("sse", "ws", "fetch"):
        wait_until(lambda t=transport: saw_the_message(t), timeout=30, what=f"{transport} change")
    final = results()
    assert final["errors"] == []
    assert final["sse"][0]["total"] == 0 and final["ws"][0]["total"] == 0

