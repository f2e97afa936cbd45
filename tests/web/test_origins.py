"""Pages on other origins, in Chromium (docs/security.md).

A page served from another loopback port is another origin (and the same
*site*: SameSite cookies go along). While the user has a session with the
service, such a page can neither create a chat with a simple ``no-cors`` POST
nor read one. A page on an origin the operator allowed (ASKSTREAM_CORS_ORIGINS)
can ask, read ``Content-Location`` and resume with ``Last-Event-ID``, as the
service's own page does.
"""

from __future__ import annotations

import functools
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from askstream.testing import ServerProcess

from .conftest import Tab, _service

TIMEOUT = 20_000  # ms


class _Pages:
    """A plain static file server on a loopback port of its own: another origin."""

    def __init__(self, root: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _Pages:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


ATTACK = """<!doctype html><meta charset="utf-8"><title>elsewhere</title>
<script type="module">
const service = new URL(location).searchParams.get("service");
const chat = new URL(location).searchParams.get("chat");
const results = {};
// A simple request: no preflight, the browser sends it and hides the answer.
try {
  await fetch(service + "/api/ask", {
    method: "POST", mode: "no-cors", credentials: "include",
    headers: {"Content-Type": "text/plain"},
    body: JSON.stringify({chatId: null, question: "forged by another origin"}),
  });
  results.forged = "sent";
} catch (error) { results.forged = "blocked: " + error; }
for (const [name, path] of [["list", "/api/chats"], ["chat", "/api/chats/" + chat]]) {
  try {
    const response = await fetch(service + path, {credentials: "include"});
    results[name] = "read: " + await response.text();
  } catch (error) { results[name] = "blocked: " + error.name; }
}
window.results = results;
</script>"""

ALLOWED = """<!doctype html><meta charset="utf-8"><title>allowed</title>
<script type="module">
const service = new URL(location).searchParams.get("service");
const { stream } = await import(service + "/static/askstream.js");
const results = {first: [], rest: []};
try {
  const controller = new AbortController();
  let location = null;
  const events = stream(service + "/api/ask", {
    method: "POST", credentials: "include", signal: controller.signal,
    body: {chatId: null, question: "from an allowed origin"},
    onResponse(response) { location = response.headers.get("Content-Location"); },
  });
  for await (const event of events) {  // the first piece, then the reader leaves
    results.first.push(event);
    break;
  }
  results.location = location;
  // Picked up again after the last event it had, as after a dropped connection.
  for await (const event of stream(new URL(location, service).href, {
    credentials: "include", lastEventId: results.first[0].id,
  })) {
    results.rest.push(event);
  }
} catch (error) { results.error = String(error); }
window.results = results;
</script>"""


@pytest.fixture(scope="module")
def origins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[_Pages, _Pages]]:
    """Two other origins: the attacker's, and one the operator allows."""
    root = tmp_path_factory.mktemp("origins")
    (root / "attack.html").write_text(ATTACK, encoding="utf-8")
    (root / "allowed.html").write_text(ALLOWED, encoding="utf-8")
    with _Pages(root) as attacker, _Pages(root) as allowed:
        yield attacker, allowed


@pytest.fixture(scope="module")
def guarded(
    tmp_path_factory: pytest.TempPathFactory, origins: tuple[_Pages, _Pages]
) -> Iterator[ServerProcess]:
    """The service, allowing the second origin only."""
    server = _service(
        tmp_path_factory.mktemp("guarded"),
        ASKSTREAM_DEMO_DELAY="0.01",
        ASKSTREAM_CORS_ORIGINS=origins[1].url,
    )
    try:
        yield server
    finally:
        server.stop()


def chats_of(tab: Tab, service: ServerProcess) -> list[dict[str, Any]]:
    # The context's own request API: the user's session cookie goes along.
    response = tab.context.request.get(service.url + "/api/chats")
    assert response.ok
    chats: list[dict[str, Any]] = response.json()["chats"]
    return chats


def test_a_page_on_another_origin_can_neither_create_nor_read_a_chat(
    tab: Tab, guarded: ServerProcess, origins: tuple[_Pages, _Pages]
) -> None:
    attacker, _ = origins
    page = tab.open(guarded.url)  # the user's session with the service
    made = tab.context.request.post(guarded.url + "/api/ask", data={"question": "private"})
    assert made.ok
    (mine,) = chats_of(tab, guarded)
    page.goto(f"{attacker.url}/attack.html?service={guarded.url}&chat={mine['chatId']}")
    page.wait_for_function("window.results !== undefined", timeout=TIMEOUT)
    results = page.evaluate("window.results")
    assert results["forged"] == "sent", results  # the browser sent it; the service refused it
    assert results["list"].startswith("blocked"), results
    assert results["chat"].startswith("blocked"), results
    assert [chat["chatId"] for chat in chats_of(tab, guarded)] == [mine["chatId"]]


def test_an_allowed_origin_asks_and_resumes(
    tab: Tab, guarded: ServerProcess, origins: tuple[_Pages, _Pages]
) -> None:
    _, allowed = origins
    page = tab.page
    page.goto(f"{allowed.url}/allowed.html?service={guarded.url}")
    page.wait_for_function("window.results !== undefined", timeout=TIMEOUT)
    results = page.evaluate("window.results")
    assert "error" not in results, results
    first, rest = results["first"], results["rest"]
    assert results["location"] == "/api/streams/" + json.loads(first[0]["data"])["messageId"]
    events = first + rest
    assert [event["id"] for event in events] == [str(n) for n in range(1, len(events) + 1)]
    assert events[-1]["event"] == "done"
    deltas = "".join(json.loads(event["data"])["delta"] for event in events[:-1])
    assert deltas == json.loads(events[-1]["data"])["answer"]
    # Its session is its own user's: the chat is listed to this browser.
    assert [chat["title"] for chat in chats_of(tab, guarded)] == ["from an allowed origin"]
