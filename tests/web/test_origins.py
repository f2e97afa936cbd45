"""Other origins, in a real Chromium (issue 11): a site on another loopback port
can neither create a chat in the service nor read one, even from the same
browser as the service's own page; a site the service allows
(``ASKSTREAM_CORS_ORIGINS``) asks and resumes with askstream.js.

Another port on 127.0.0.1 is another origin but the *same site*, so a
``SameSite=Lax`` session cookie goes along with its requests: the service's
Origin check and CORS allowlist are what stop it, and what these tests prove.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from askstream.testing import ServerProcess

from .conftest import Tab, bearer, session_headers
from .test_page import ask, open_chat_id, wait_status

# What a hostile site tries, with the person's session cookie along.
HOSTILE = """
async ({ base, chatId }) => {
  // A "simple" request: no preflight, any body; the browser sends it and hides the answer.
  const sent = await fetch(`${base}/api/ask`, {
    method: "POST",
    mode: "no-cors",
    credentials: "include",
    headers: { "Content-Type": "text/plain" },
    body: JSON.stringify({ chatId: null, question: "from another site" }),
  });
  const reads = {};
  for (const path of ["/api/chats", `/api/chats/${chatId}`]) {
    try {
      const response = await fetch(base + path, { credentials: "include" });
      reads[path] = `read: ${response.status}`;
    } catch (error) {
      reads[path] = error.name;
    }
  }
  let streamed;
  try {
    const { stream } = await import("/askstream.js");
    const events = stream(`${base}/api/ask`, {
      method: "POST",
      body: { chatId, question: "and this" },
      credentials: "include",
    });
    for await (const event of events) streamed = `read: ${event.event}`;
  } catch (error) {
    streamed = error.name;
  }
  return { sent: sent.type, reads, streamed };
}
"""

# An allowed site asks, reads three events, leaves, then resumes after the third.
ASK_AND_RESUME = """
async ({ base, headers, credentials }) => {
  const { stream } = await import("/askstream.js");
  let location = null;
  const first = [];
  for await (const event of stream(`${base}/api/ask`, {
    method: "POST",
    body: { chatId: null, question: "Tell me a story" },
    headers,
    credentials,
    onResponse: (response) => (location ??= response.headers.get("Content-Location")),
  })) {
    first.push(event);
    if (first.length === 3) break;
  }
  const rest = [];
  const resume = new URL(location, base).href;
  const lastEventId = first.at(-1).id;
  for await (const event of stream(resume, { lastEventId, headers, credentials })) rest.push(event);
  return { location, first, rest };
}
"""


def test_another_site_can_neither_create_nor_read_a_chat(
    tab: Tab, demo_service: ServerProcess, another_site: ServerProcess
) -> None:
    page = tab.open(demo_service.url)
    ask(page, "Something private")
    wait_status(page, "complete")
    chat_id = open_chat_id(page)
    session = session_headers(tab, demo_service)
    assert session, "the page has no session cookie"

    # The same browser, so the same cookies, on another site.
    hostile = tab.context.new_page()
    answers: list[tuple[str, str, int]] = []
    hostile.on("response", lambda r: answers.append((r.request.method, r.url, r.status)))
    hostile.goto(another_site.url)
    result = hostile.evaluate(HOSTILE, {"base": demo_service.url, "chatId": chat_id})

    assert result == {
        "sent": "opaque",  # sent, answer hidden: the service must refuse it itself
        "reads": {"/api/chats": "TypeError", f"/api/chats/{chat_id}": "TypeError"},
        "streamed": "TypeError",
    }
    assert ("POST", f"{demo_service.url}/api/ask", 403) in answers
    # Nothing was added to the person's chats.
    chats = httpx.get(f"{demo_service.url}/api/chats", headers=session).json()["chats"]
    assert [chat["chatId"] for chat in chats] == [chat_id]
    chat = httpx.get(f"{demo_service.url}/api/chats/{chat_id}", headers=session).json()
    assert [message["role"] for message in chat["messages"]] == ["user", "assistant"]


def test_an_allowed_site_asks_and_resumes(
    request: pytest.FixtureRequest,
    tab: Tab,
    cors_service: ServerProcess,
    allowed_site: ServerProcess,
) -> None:
    mode = request.node.callspec.params["cors_service"]
    if mode == "token":  # the token in a header; no cookies cross origins
        options = {"headers": bearer("alice"), "credentials": "same-origin"}
    else:  # the service's session cookie, sent across origins on purpose
        options = {"headers": {}, "credentials": "include"}
    page = tab.page
    page.goto(allowed_site.url)
    result: dict[str, Any] = page.evaluate(ASK_AND_RESUME, {"base": cors_service.url, **options})

    # Content-Location was exposed to the other origin, and named the stream.
    assert result["location"].startswith("/api/streams/")
    first, rest = result["first"], result["rest"]
    assert rest[-1]["event"] == "done"
    events = first + rest
    ids = [event["id"] for event in events]
    assert len(ids) == len(set(ids)), ids  # nothing twice
    done = events[-1]
    deltas = [json.loads(event["data"])["delta"] for event in events[:-1]]
    assert "".join(deltas) == json.loads(done["data"])["answer"]

    # The chat belongs to whoever the other site asked as.
    if mode == "token":
        who = bearer("alice")
    else:
        who = session_headers(tab, cors_service)
        assert who, "the allowed site's request got no session cookie"
    chats = httpx.get(f"{cors_service.url}/api/chats", headers=who).json()["chats"]
    assert json.loads(first[0]["data"])["chatId"] in [chat["chatId"] for chat in chats]
    assert tab.errors == []
